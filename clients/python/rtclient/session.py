"""One open session as the client sees it: its turns, the frames that belong to it, and how it catches up after a
resume (the frames it missed, or a snapshot when the server could not replay them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rtprotocol import SeqTracker
from rtprotocol import frames as F
from rtprotocol.textcheck import mismatch

from .turn import TextMismatch, Turn, TurnResult

if TYPE_CHECKING:
    from .client import Client


class Session:
    def __init__(self, client: Client, frame: F.Frame) -> None:
        self.client = client
        self.sid: str = frame["sid"]
        self.tracker = SeqTracker()
        self.tracker.reset(frame["ep"], frame["seq"])
        self.state: dict[str, Any] = frame["state"]
        self.snapshot: dict[str, Any] | None = frame.get("snap")
        self.turns: dict[int, Turn] = {}  # by tid, while running
        self.pending: dict[Any, Turn] = {}  # by frame id, until turn.start
        self.closed = False
        self._resend_after: int | None = None

    # --- operations -------------------------------------------------------------------------------------------

    async def _turn(self, kind: str, **fields: Any) -> Turn:
        fid = self.client._next_id()
        frame = {"t": kind, "id": fid, "sid": self.sid, **{k: v for k, v in fields.items() if v is not None}}
        turn = self.pending[fid] = Turn(kind, frame)
        await self.client._send(frame, fid)
        await turn._started
        return turn

    async def say(
        self,
        text: str,
        *,
        params: dict[str, Any] | None = None,
        interrupt: bool = False,
        schema: dict[str, Any] | None = None,
        grammar: str | None = None,
    ) -> Turn:
        """Start a turn. With ``schema`` (a JSON schema) the reply is constrained to it; ``TurnResult.parsed``
        says whether it parsed as JSON. With ``grammar`` (llama.cpp GBNF, a rule named ``root``) the reply is
        constrained to that instead."""
        return await self._turn(
            "say", text=text, params=params, interrupt=interrupt or None, schema=schema, grammar=grammar
        )

    async def regenerate(self, *, params: dict[str, Any] | None = None) -> Turn:
        return await self._turn("regenerate", params=params)

    async def continue_(self, *, params: dict[str, Any] | None = None) -> Turn:
        return await self._turn("continue", params=params)

    async def impersonate(self, *, params: dict[str, Any] | None = None) -> Turn:
        """A suggestion for the player's next line, streamed like a reply; the history does not keep it."""
        return await self._turn("impersonate", params=params)

    async def edit(self, tid: int, *, user: str | None = None, reply: str | None = None) -> int:
        """Add an edited copy of turn ``tid`` as its sibling, at the head; returns its turn id."""
        frame = {"t": "edit", "sid": self.sid, "tid": tid, "user": user, "reply": reply}
        await self.client._request({k: v for k, v in frame.items() if v is not None}, expect=None)
        return int(self.state["head"])

    async def cancel(self) -> None:
        await self.client._request({"t": "cancel", "sid": self.sid}, expect=None)

    async def rollback(self, tid: int) -> None:
        await self.client._request({"t": "rollback", "sid": self.sid, "tid": tid}, expect=None)

    async def update(
        self,
        *,
        persona: str | None = None,
        params: dict[str, Any] | None = None,
        vars: dict[str, Any] | None = None,
        unset: list[str] | None = None,
        note: str | None = None,
        note_depth: int | None = None,
    ) -> None:
        """Change the persona or default parameters; in a card session also the story variables (``vars`` set,
        ``unset`` removes), the author's note (``""`` removes it) and its depth."""
        frame = {
            "t": "session.update",
            "sid": self.sid,
            "persona": persona,
            "params": params,
            "vars": vars,
            "unset": unset,
            "note": note,
            "note_depth": note_depth,
        }
        await self.client._request({k: v for k, v in frame.items() if v is not None}, expect=None)

    async def refresh(self) -> dict[str, Any]:
        """Read the session from the server as it is now (an attach on this connection): ``state`` and the
        snapshot, whose ``turns`` hold the history's text of each turn on the active path. Frames keep flowing
        as before: the reply comes in order with them, so nothing is skipped or repeated."""
        reply = await self.client._request({"t": "session.open", "sid": self.sid, "snapshot": True})
        self.state, self.snapshot = reply["state"], reply.get("snap")
        return self.snapshot or {}

    async def close(self) -> None:
        await self.client._request({"t": "session.close", "sid": self.sid}, expect=None)
        self.closed = True
        self.client.sessions.pop(self.sid, None)

    # --- frames -----------------------------------------------------------------------------------------------

    def _on_frame(self, f: F.Frame) -> None:
        if not self.tracker.accept(f["seq"]):
            return  # already delivered (a replay overlapping what we saw)
        t = f["t"]
        if t == "turn.start":
            turn = self.pending.pop(f.get("id"), None) if f.get("id") is not None else None
            if turn is None:
                turn = Turn(f["kind"], {})  # started by another client of this session
            turn._start(f["tid"], f["parent"])
            self.turns[f["tid"]] = turn
            self.state["running"] = f["tid"]
        elif t == "delta":
            turn = self.turns.get(f["tid"])
            if turn is not None:
                turn._feed(f["x"])
        elif t == "turn.end":
            turn = self.turns.pop(f["tid"], None)
            self.state["running"] = None
            if turn is not None:
                self._end_turn(turn, f)
        elif t == "session.updated":
            self.state = f["state"]
        elif t == "session.closed":
            self.closed = True
        if self._resend_after is not None and f["seq"] >= self._resend_after:
            self._resend_unstarted()

    @staticmethod
    def _end_turn(turn: Turn, f: F.Frame) -> None:
        """End ``turn`` on its ``turn.end``, checking the assembled text against ``xlen``/``xcrc``."""
        result = TurnResult(
            f["tid"],
            f["reason"],
            turn.text,
            f.get("usage", {}),
            f.get("timings", {}),
            f.get("cache", "miss"),
            f.get("error"),
            f.get("parsed"),
            f.get("code"),
            f.get("valid"),
            f.get("path"),
            f.get("lore"),
        )
        problem = mismatch(turn.text, f)
        if problem is None:
            turn._end(result)
        else:
            turn._fail(TextMismatch(result, problem))

    def _on_resumed(self, f: F.Frame) -> None:
        """The server's answer to ``session.resume`` after a reconnect."""
        if f.get("recovered"):
            # Replayed frames follow; a turn we asked for that does not appear by seq f["seq"] never arrived.
            if f["seq"] <= self.tracker.last_seq:
                self._resend_unstarted()
            else:
                self._resend_after = f["seq"]
            return
        self.tracker.reset(f["ep"], f["seq"])
        self.state, self.snapshot = f["state"], f.get("snap")
        snap = f.get("snap") or {}
        done = {t["tid"]: t for t in snap.get("turns", [])}
        running = snap.get("running")
        for tid, turn in list(self.turns.items()):
            if running and running["tid"] == tid:
                turn._catch_up(running["text"])
            elif tid in done:
                node = done[tid]
                turn._catch_up(node["reply"])
                turn._end(TurnResult(tid, node["reason"], turn.text, node.get("usage", {}), code=node.get("code")))
                del self.turns[tid]
            else:
                turn._end(TurnResult(tid, "cancelled", turn.text, error="lost with the server's frame log"))
                del self.turns[tid]
        if running and running["tid"] not in self.turns:
            for fid, turn in list(self.pending.items()):
                if turn.frame.get("text") == running.get("user"):
                    del self.pending[fid]
                    turn._start(running["tid"], running["parent"])
                    turn._catch_up(running["text"])
                    self.turns[running["tid"]] = turn
                    break
        self._resend_unstarted()

    def _resend_unstarted(self) -> None:
        self._resend_after = None
        for turn in self.pending.values():
            self.client._send_nowait(turn.frame)
