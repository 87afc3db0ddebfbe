"""Turns: starting one, running it through the turn pipeline, and ending it exactly once.

Every ``turn.start`` is followed by exactly one ``turn.end``. A turn is in the history only once the store has it;
``turn.end`` is sent after that, so a client that saw ``turn.end{stop}`` can rely on the turn surviving a crash.
Whatever fails in a turn (the engine, a filter, the store) ends it with ``reason: error`` and a stable ``code``;
the client gets a message that says what to do, the log gets the traceback. Turn ids are reserved durably in
blocks before they are handed out, so none is ever given twice, even across a crash.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import zlib
from typing import Any

import structlog
from rtprotocol import frames as F

from ..engine.base import Finish, Message, Request, Token
from ..engine.grammar import schema_to_grammar
from ..errors import ClientError, StoreFailed
from ..filters import Pipeline, TurnContext
from ..story.render import IMPERSONATE, render
from .history import TurnNode
from .manager import SessionManager
from .replycheck import check_reply, schema_problem
from .session import RunningTurn, Session
from .store import TID_BLOCK

log = structlog.get_logger("rtserver.turn")

MESSAGES = {  # code -> what the client is told: never an exception's text
    "engine_error": "the model failed on this turn; the session is intact: retry the turn",
    "internal": "the turn failed on the server; the session is intact: retry the turn",
    "store_failed": "the turn could not be written to disk and is not in the history; the session is intact: "
    "retry the turn",
}


class Turns:
    def __init__(
        self,
        manager: SessionManager,
        pipeline: Pipeline,
    ) -> None:
        self.m = manager
        self.pipeline = pipeline

    async def start(
        self,
        s: Session,
        kind: str,
        user: str | None,
        params: dict[str, Any],
        frame_id: Any,
        schema: dict[str, Any] | None = None,
        grammar: str | None = None,
    ) -> None:
        if s.running:
            raise ClientError(
                "a turn is running; wait for turn.end, cancel it, or say with interrupt: true", code="turn_running"
            )
        self.m.check_text(user, "text")
        if schema is not None and grammar is not None:
            raise ClientError("say takes a schema or a grammar, not both", code="bad_field")
        h, asked = s.history, kind
        if kind in ("say", "impersonate"):
            parent, continue_last = h.head, False  # (an impersonation suggests the player's line: none is given)
        elif not h.head:
            raise ClientError("there is no reply yet to regenerate or continue", code="nothing_to_regenerate")
        elif kind == "regenerate":
            # A sibling of the head: the same question (or the same continuation point), a new answer.
            cur = h.nodes[h.head]
            if cur.kind == "greeting":
                raise ClientError(
                    "a greeting's alternatives are the card's greetings, its siblings: rollback to one",
                    code="nothing_to_regenerate",
                )
            parent, user, continue_last = cur.parent, cur.user, cur.user is None
            kind = "continue" if continue_last else kind
            schema, grammar = cur.schema, cur.grammar  # a structured reply's alternative is constrained alike
            if params.get("seed") is None:  # an alternative must differ, whatever the session's default seed
                params = {**params, "seed": secrets.randbits(31)}
        else:
            parent, continue_last = h.head, True
        if schema is not None and (why := schema_problem(schema)):
            raise ClientError(f"say.schema is not a JSON schema: {why}"[:300], code="bad_field")
        rule = schema_to_grammar(schema) if schema is not None else grammar
        request, lore = self._request(s, parent, user, continue_last, params, rule, kind == "impersonate")
        ctx = TurnContext(s.sid, h.next_tid, s.data.model, request, structured=schema is not None, kind=asked)
        ctx.cache_opt = {**s.data.params, **params}.get("cache")  # the reply cache's opt-in/out (filters/cache.py)
        await self.pipeline.admit_turn(ctx)  # a refusal (bad grammar, busy, limit) raises here: nothing started
        if s.running:  # another client's turn started while a shared limit was asked (Redis)
            self.pipeline.undo_admit(ctx)
            raise ClientError("a turn is running; wait for turn.end or cancel it", code="turn_running")
        node = h.new_turn(kind, user, parent)
        node.schema, node.grammar = schema, grammar
        turn = s.running = RunningTurn(node, request, structured=schema is not None, lore=lore)
        if node.tid > s.reserved:
            try:
                await self.m.store.reserve_tids(s.sid, s.gen, node.tid + TID_BLOCK - 1)
            except StoreFailed as exc:
                log.error("tids_not_reserved", sid=s.sid, tid=node.tid, error=exc.message)
                s.running, h.next_tid = None, node.tid  # nobody saw this id: it may be given again
                self.pipeline.undo_admit(ctx)
                raise StoreFailed(
                    "the turn could not be started: writing to disk failed; the session is intact: retry the turn"
                ) from None
            s.reserved = node.tid + TID_BLOCK - 1
        start = F.turn_start(s.sid, 0, node.tid, kind, parent)  # type: ignore[arg-type]
        if frame_id is not None:
            start["id"] = frame_id
        s.emit(start, self.m.wall())
        turn.task = asyncio.get_running_loop().create_task(self._run(s, turn, ctx), name=f"turn-{s.sid}-{node.tid}")

    def _request(
        self,
        s: Session,
        parent: int,
        user: str | None,
        continue_last: bool,
        params: dict[str, Any],
        rule: str | None,
        impersonate: bool = False,
    ) -> tuple[Request, list[int | str] | None]:
        """The engine's request, and for a card session the ids of the book's entries its prompt carries."""
        lore = None
        if s.story is not None:
            r = render(
                s.story,
                s.history.path(parent),
                user,
                persona=s.data.persona,
                continue_last=continue_last,
                impersonate=impersonate,
                seen=s.lore_seen,
            )
            messages, lore = r.messages, r.lore
        else:
            messages = s.history.messages(s.data.persona, parent)
            if user is not None:
                messages.append(Message("user", user))
            if impersonate:
                messages.append(Message("system", IMPERSONATE.replace("{{user}}", "the user")))
        p = {**self.m.config.default_params, **s.data.params, **params}
        request = Request(
            s.sid,
            messages,
            continue_last=continue_last,
            temperature=float(p["temperature"]),
            top_p=float(p["top_p"]),
            seed=p.get("seed"),
            max_tokens=int(p["max_tokens"]),
            stop=list(p.get("stop") or ()),
            grammar=rule,
            priority=int(p.get("priority", 0)),
            top_k=int(p.get("top_k", 0)),
            min_p=float(p.get("min_p", 0.0)),
            repeat_penalty=float(p.get("repeat_penalty", 1.0)),
            repeat_last_n=int(p.get("repeat_last_n", 64)),
            presence_penalty=float(p.get("presence_penalty", 0.0)),
            frequency_penalty=float(p.get("frequency_penalty", 0.0)),
        )
        return request, lore

    async def _run(self, s: Session, turn: RunningTurn, ctx: TurnContext) -> None:
        node = turn.node
        finish, code = Finish("error"), "internal"
        try:
            finish = await self._stream(s, turn, ctx)
            code = ctx.code or ("engine_error" if finish.reason == "error" else "")
            if code == "engine_error":
                log.error("turn_engine_error", sid=s.sid, tid=node.tid, error=(finish.error or "")[:300])
        except Exception:  # the errors filter catches what the chain raises: this is a fault of the turn code
            log.exception("turn_failed", sid=s.sid, tid=node.tid)
        try:  # whatever happened, the turn (and the text it got to) goes into the history, or says it did not
            self._fill(node, turn, finish)
            node.code = code or None
            if node.kind != "impersonate":  # a suggestion for the player's line, never part of the story
                await self.m.store.save_turn(s.sid, s.gen, node)
                s.history.commit(node)
        except StoreFailed as exc:
            log.error("turn_not_stored", sid=s.sid, tid=node.tid, error=exc.message)
            code = "store_failed"
        finally:
            self._end(s, turn, ctx, finish, code)

    async def _stream(self, s: Session, turn: RunningTurn, ctx: TurnContext) -> Finish:
        """Run the turn chain, sending each token as a delta; the Finish it ended with."""
        finish, tid = Finish("error"), turn.node.tid
        events = self.pipeline.turn(ctx)
        try:
            async for event in events:
                if isinstance(event, Token):
                    turn.text.append(event.text)
                    s.emit(F.delta(s.sid, 0, tid, event.text), self.m.wall())
                else:
                    finish = event
        finally:  # closed now even when cancelled, so every filter's own cleanup runs (admission's place)
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()
        return finish

    @staticmethod
    def _fill(node: TurnNode, turn: RunningTurn, finish: Finish) -> None:
        node.reply, node.reason = "".join(turn.text), finish.reason
        node.usage = {
            "prompt": finish.prompt_tokens,
            "reused": finish.reused_tokens,
            "completion": finish.completion_tokens,
        }

    def _end(self, s: Session, turn: RunningTurn, ctx: TurnContext, finish: Finish, code: str) -> None:
        """The one ``turn.end`` of a turn, whatever happened: the session, admission and engine are free after."""
        node = turn.node
        s.running = None
        end = time.perf_counter()
        ttft = (ctx.first_token - ctx.started) * 1000 if ctx.first_token else None
        timings = {
            "queue_ms": round(finish.queue_ms, 3),
            "ttft_ms": round(ttft, 3) if ttft is not None else None,
            "total_ms": round((end - ctx.started) * 1000, 3),
        }
        text = "".join(turn.text).encode()
        reason = "error" if code else finish.reason
        check = check_reply(text.decode(), node.schema) if turn.structured else None
        frame = F.turn_end(
            s.sid,
            0,
            node.tid,
            reason,
            node.usage,
            timings,
            ctx.cache,
            xlen=len(text),
            xcrc=zlib.crc32(text),
            error=MESSAGES[code] if code else None,
            code=code or None,
            parsed=check.parsed if check else None,
            valid=check.valid if check else None,
            path=check.path if check else None,
            lore=turn.lore,
        )
        s.emit(frame, self.m.wall())
        for after in ctx.after:  # (tracing: the durable write's span ends with turn.end)
            after()
        log.info(
            "turn", sid=s.sid, tid=node.tid, kind=node.kind, reason=reason, code=code or None, **node.usage, **timings
        )

    async def cancel(self, s: Session) -> None:
        if not s.running:
            raise ClientError("no turn is running in this session", code="no_turn")
        turn = s.running
        turn.request.cancel.set()
        if turn.task is not None:
            await asyncio.shield(turn.task)

    async def drain(self, bound: float) -> None:
        """Let running turns finish for up to ``bound`` seconds, then cancel the rest (they still end properly)."""
        running = [s for s in self.m.sessions.values() if s.running and s.running.task]
        tasks = [s.running.task for s in running if s.running and s.running.task]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=bound)
        for s in running:
            if s.running:
                s.running.request.cancel.set()
        if pending:
            await asyncio.wait(pending, timeout=5)
