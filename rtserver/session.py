"""Sessions at run time: numbered frames fanned out to the connections attached, and the turns they run.

A turn belongs to its session, not to the connection that asked for it: a client that drops mid-turn does not
stop it. When the last connection leaves during a turn, the turn runs on for ``resume_grace`` seconds so a
reconnecting client resumes it; if nobody comes back in time it ends as ``cancelled``.

Every ``turn.start`` is followed by exactly one ``turn.end``, sent only after the turn is durable in the store.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Any, Protocol

import structlog
from rtprotocol import FrameLog, encode_msgpack
from rtprotocol import frames as F

from .admission import Admission
from .engine.base import Finish, Message, Request, Token
from .engine.grammar import parses, schema_to_grammar
from .errors import ClientError
from .history import History, TurnNode
from .pipeline import Handler, TurnContext
from .store import SessionData, Store

log = structlog.get_logger("rtserver.session")


class Subscriber(Protocol):
    def push(self, data: bytes) -> None: ...


class RunningTurn:
    def __init__(self, node: TurnNode, request: Request, structured: bool = False) -> None:
        self.node = node
        self.request = request
        self.structured = structured  # the reply is constrained to a JSON schema; turn.end says if it parses
        self.text: list[str] = []
        self.task: asyncio.Task[None] | None = None


class Session:
    def __init__(self, data: SessionData, log_: FrameLog[bytes]) -> None:
        self.data = data
        self.log = log_
        self.subscribers: set[Subscriber] = set()
        self.running: RunningTurn | None = None
        self.grace: asyncio.TimerHandle | None = None

    @property
    def sid(self) -> str:
        return self.data.sid

    @property
    def history(self) -> History:
        return self.data.history

    def emit(self, frame: F.Frame) -> None:
        """Number the frame, encode it once (msgpack), keep it in the log and queue it to every attached
        connection. Frames live on as bytes only: a JSON client's connection renders its own copy."""
        frame["seq"] = self.log.last_seq + 1
        data = encode_msgpack(frame)
        self.log.append(data)
        for sub in tuple(self.subscribers):
            sub.push(data)

    def state(self) -> dict[str, Any]:
        return {
            "model": self.data.model,
            "persona": self.data.persona,
            "params": self.data.params,
            "head": self.history.head,
            "turns": len(self.history.path()),
            "running": self.running.node.tid if self.running else None,
        }

    def snapshot(self) -> dict[str, Any]:
        snap: dict[str, Any] = {"turns": [n.public() for n in self.history.path()], "running": None}
        if self.running:
            r = self.running
            snap["running"] = {
                "tid": r.node.tid,
                "kind": r.node.kind,
                "parent": r.node.parent,
                "user": r.node.user,
                "text": "".join(r.text),
            }
        return snap

    def session_frame(
        self, *, frame_id: Any = None, snapshot: bool = False, recovered: bool | None = None, why: str | None = None
    ) -> F.Frame:
        """The reply to open/attach/resume. It carries the current seq but is not itself a numbered frame."""
        f: F.Frame = {
            "t": "session",
            "sid": self.sid,
            "seq": self.log.last_seq,
            "ep": self.log.epoch,
            "state": self.state(),
        }
        if frame_id is not None:
            f["id"] = frame_id
        if recovered is not None:
            f["recovered"] = recovered
        if why is not None:
            f["why"] = why
        if snapshot:
            f["snap"] = self.snapshot()
        return f


class SessionManager:
    def __init__(
        self,
        store: Store,
        handler: Handler,
        *,
        default_model: str,
        models: set[str],
        default_params: dict[str, Any],
        resume_grace: float,
        max_text: int,
        admission: dict[str, Admission],
        grammar_error: Callable[[str, str], str | None] = lambda model, grammar: None,
    ) -> None:
        self.store = store
        self.handler = handler
        self.default_model, self.models = default_model, models
        self.default_params = default_params
        self.resume_grace = resume_grace
        self.max_text = max_text
        self.admission = admission  # per model
        self.grammar_error = grammar_error  # (model, GBNF) -> why the model's engine cannot use it, or None
        self.sessions: dict[str, Session] = {}

    async def load(self) -> None:
        for sid, data in (await self.store.open()).items():
            self.sessions[sid] = Session(data, self.store.frame_log(sid))

    def get(self, sid: str) -> Session:
        s = self.sessions.get(sid)
        if s is None:
            raise ClientError(
                "no session with this id: it was closed or never existed; open a new one", code="unknown_session"
            )
        return s

    async def create(self, persona: str | None, params: dict[str, Any], model: str | None) -> Session:
        model = model or self.default_model
        if model not in self.models:
            raise ClientError(
                f"model {model[:60]!r} is not configured here; choose one of {sorted(self.models)}",
                code="unknown_model",
            )
        self._check_text(persona, "persona")
        data = SessionData(secrets.token_urlsafe(16), persona, dict(params), model, owner=self.store.node_id)
        await self.store.create(data)
        s = self.sessions[data.sid] = Session(data, self.store.frame_log(data.sid))
        return s

    def _check_text(self, text: str | None, field: str) -> None:
        if text is not None and len(text) > self.max_text:
            raise ClientError(f"{field} is {len(text)} characters; the limit is {self.max_text}", code="too_large")

    # --- attach / detach --------------------------------------------------------------------------------------

    def attach(self, s: Session, sub: Subscriber) -> None:
        s.subscribers.add(sub)
        if s.grace is not None:
            s.grace.cancel()
            s.grace = None

    def detach(self, s: Session, sub: Subscriber) -> None:
        s.subscribers.discard(sub)
        if not s.subscribers and s.running and s.grace is None:
            s.grace = asyncio.get_running_loop().call_later(self.resume_grace, self._grace_over, s)

    def _grace_over(self, s: Session) -> None:
        s.grace = None
        if not s.subscribers and s.running:
            log.info("turn_abandoned", sid=s.sid, tid=s.running.node.tid)
            s.running.request.cancel.set()

    # --- turns ------------------------------------------------------------------------------------------------

    def start_turn(
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
        self._check_text(user, "text")
        if schema is not None and grammar is not None:
            raise ClientError("say takes a schema or a grammar, not both", code="bad_field")
        h = s.history
        if kind == "say":
            parent, continue_last = h.head, False
        elif not h.head:
            raise ClientError("there is no reply yet to regenerate or continue", code="nothing_to_regenerate")
        elif kind == "regenerate":
            # A sibling of the head: the same question (or the same continuation point), a new answer.
            cur = h.nodes[h.head]
            parent, user, continue_last = cur.parent, cur.user, cur.user is None
            kind = "continue" if continue_last else kind
            schema, grammar = cur.schema, cur.grammar  # a structured reply's alternative is constrained alike
        else:
            parent, continue_last = h.head, True
        rule = schema_to_grammar(schema) if schema is not None else grammar
        if rule is not None and (why := self.grammar_error(s.data.model, rule)):
            if schema is not None:
                why = (
                    "llama.cpp refused the grammar it becomes; the usual causes are a large maxLength, maxItems or "
                    "repetition count (llama.cpp caps how far a grammar may repeat) and regex features it lacks "
                    "(\\d, \\w and \\s are supported)"
                )
            raise ClientError(f"say.{'schema' if schema is not None else 'grammar'}: {why}"[:300], code="bad_field")
        messages = h.messages(s.data.persona, parent)
        if user is not None:
            messages.append(Message("user", user))
        p = {**self.default_params, **s.data.params, **params}
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
        )
        self.admission[s.data.model].admit(request.priority)  # raises Busy: nothing has started, nothing to undo
        node = h.new_turn(kind, user, parent)
        node.schema, node.grammar = schema, grammar
        turn = s.running = RunningTurn(node, request, structured=schema is not None)
        start = F.turn_start(s.sid, 0, node.tid, kind, parent)  # type: ignore[arg-type]
        if frame_id is not None:
            start["id"] = frame_id
        s.emit(start)
        turn.task = asyncio.get_running_loop().create_task(self._run(s, turn), name=f"turn-{s.sid}-{node.tid}")

    async def _run(self, s: Session, turn: RunningTurn) -> None:
        node, ctx = turn.node, TurnContext(s.sid, turn.node.tid, s.data.model, turn.request)
        finish = Finish("error")
        async for event in self.handler(ctx):
            if isinstance(event, Token):
                turn.text.append(event.text)
                s.emit(F.delta(s.sid, 0, node.tid, event.text))
            else:
                finish = event
        node.reply, node.reason = "".join(turn.text), finish.reason
        node.usage = {
            "prompt": finish.prompt_tokens,
            "reused": finish.reused_tokens,
            "completion": finish.completion_tokens,
        }
        try:
            await self.store.save_turn(s.sid, node)
        except Exception as exc:  # the turn still ends, as an error: clients never wait for an end that won't come
            log.error("persist_failed", sid=s.sid, tid=node.tid, error=f"{type(exc).__name__}: {exc}"[:200])
            finish = Finish("error", error="could not persist the turn; it is not in the history")
        else:
            s.history.commit(node)
        s.running = None
        end = time.perf_counter()
        self.admission[s.data.model].done(end - ctx.started, turn.request.priority)
        ttft = (ctx.first_token - ctx.started) * 1000 if ctx.first_token else None
        timings = {
            "queue_ms": round(finish.queue_ms, 3),
            "ttft_ms": round(ttft, 3) if ttft is not None else None,
            "total_ms": round((end - ctx.started) * 1000, 3),
        }
        frame = F.turn_end(s.sid, 0, node.tid, finish.reason, node.usage, timings)  # type: ignore[arg-type]
        if finish.error:
            frame["error"] = finish.error
        if turn.structured:
            frame["parsed"] = parses(node.reply)
        s.emit(frame)
        log.info("turn", sid=s.sid, tid=node.tid, kind=node.kind, reason=finish.reason, **node.usage, **timings)

    async def cancel(self, s: Session) -> None:
        if not s.running:
            raise ClientError("no turn is running in this session", code="no_turn")
        turn = s.running
        turn.request.cancel.set()
        if turn.task is not None:
            await asyncio.shield(turn.task)

    async def rollback(self, s: Session, tid: int) -> None:
        if s.running:
            raise ClientError("a turn is running; cancel it before rolling back", code="turn_running")
        if tid != 0 and tid not in s.history.nodes:
            raise ClientError(f"turn {tid} does not exist in this session", code="unknown_turn")
        await self.store.set_head(s.sid, tid)
        s.history.head = tid
        s.emit({"t": "session.updated", "sid": s.sid, "seq": 0, "state": s.state()})

    async def update(self, s: Session, persona: str | None, params: dict[str, Any]) -> None:
        self._check_text(persona, "persona")
        new_persona = persona if persona is not None else s.data.persona
        new_params = {**s.data.params, **params}
        await self.store.update(s.sid, new_persona, new_params)
        s.data.persona, s.data.params = new_persona, new_params
        s.emit({"t": "session.updated", "sid": s.sid, "seq": 0, "state": s.state()})

    async def close_session(self, s: Session) -> None:
        if s.running:
            await self.cancel(s)
        await self.store.delete(s.sid)
        s.emit({"t": "session.closed", "sid": s.sid, "seq": 0})
        self.sessions.pop(s.sid, None)

    async def drain(self, bound: float) -> None:
        """Let running turns finish for up to ``bound`` seconds, then cancel the rest (they still end properly)."""
        tasks = [s.running.task for s in self.sessions.values() if s.running and s.running.task]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=bound)
        for s in self.sessions.values():
            if s.running:
                s.running.request.cancel.set()
        if pending:
            await asyncio.wait(pending, timeout=5)
