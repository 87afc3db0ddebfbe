"""The reference client: sessions, streaming turns, and transparent reconnect + resume.

    async with Client("ws://127.0.0.1:8000/") as client:
        session = await client.open_session(persona="You are Bram, a gruff blacksmith.")
        turn = await session.say("Hello!")
        async for text in turn:
            print(text, end="", flush=True)
        result = await turn.result()     # reason, usage, timings, the whole text

When the connection drops, the client reconnects with backoff and full jitter, resumes every open session
from the last seq it delivered, and the caller sees every delta exactly once. If the server cannot replay the
gap (the log moved on, or the server restarted), the client reconciles from the snapshot instead.

Every turn's text is checked when it ends: ``turn.end`` carries the UTF-8 length and CRC-32 of the text the
server sent (``xlen``/``xcrc``, PROTOCOL.md §3 "Checking a reply"), and the client compares them with what it
assembled. On a mismatch ``Turn.result()`` (and the end of ``async for``) raises ``TextMismatch``, which
carries the ``TurnResult`` with the assembled text: the pieces already yielded cannot be taken back, and a
difference is a bug on one side, never a lost frame (seq numbers catch those), so it is reported rather than
patched over. The server's text is the one in the history: ``Session.refresh()`` reads it from a snapshot.
A server that does not send ``xlen``/``xcrc`` is not checked.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import websockets
from rtprotocol import Codec, GapError, SeqTracker
from rtprotocol import frames as F
from rtprotocol.textcheck import mismatch
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from .backoff import Backoff
from .turn import ConnectionLost, RtClientError, TextMismatch, Turn, TurnResult

__all__ = ["Client", "ConnectionLost", "RtClientError", "Session", "TextMismatch", "Turn", "TurnResult"]


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

    async def cancel(self) -> None:
        await self.client._request({"t": "cancel", "sid": self.sid}, expect=None)

    async def rollback(self, tid: int) -> None:
        await self.client._request({"t": "rollback", "sid": self.sid, "tid": tid}, expect=None)

    async def update(self, *, persona: str | None = None, params: dict[str, Any] | None = None) -> None:
        frame = {"t": "session.update", "sid": self.sid, "persona": persona, "params": params}
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
                turn._end(TurnResult(tid, node["reason"], turn.text, node.get("usage", {})))
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


_ACKS = {
    "cancel": ("turn.end",),
    "rollback": ("session.updated",),
    "session.update": ("session.updated",),
    "session.close": ("session.closed",),
}


class Client:
    def __init__(
        self,
        url: str,
        *,
        subprotocol: str = F.SUBPROTOCOL_MSGPACK,
        name: str = "rtclient",
        reconnect: bool = True,
        backoff: Backoff | None = None,
        open_timeout: float = 10.0,
    ) -> None:
        self.url, self.subprotocol, self.name = url, subprotocol, name
        self.reconnect, self.backoff = reconnect, backoff or Backoff()
        self.open_timeout = open_timeout
        self.codec = Codec(subprotocol)
        self.ws: ClientConnection | None = None
        self.welcome: F.Frame = {}
        self.sessions: dict[str, Session] = {}
        self.reconnects = 0
        self._ids = itertools.count(1)
        self._waiting: dict[Any, asyncio.Future[F.Frame]] = {}
        self._resuming: dict[Any, Session] = {}  # session.resume frame id -> session
        # requests answered by a session frame (cancel -> turn.end, ...): id -> (sid, frame types)
        self._acks: dict[Any, tuple[str, tuple[str, ...]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closed = False
        self._gone: BaseException | None = None  # set once the client closed or gave up reconnecting

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _next_id(self) -> int:
        return next(self._ids)

    # --- connection -------------------------------------------------------------------------------------------

    async def connect(self) -> None:
        await self._open()
        self._reader = asyncio.get_running_loop().create_task(self._read_forever())

    async def _open(self) -> None:
        self.ws = await websockets.connect(
            self.url,
            subprotocols=[self.subprotocol],  # type: ignore[list-item]
            compression=None,
            open_timeout=self.open_timeout,
            max_size=None,
        )
        await self.ws.send(self.codec.encode({"t": "hello", "client": self.name, "version": "0.1.0"}))
        self.welcome = self.codec.decode(await self.ws.recv())
        if self.welcome.get("t") != "welcome":
            raise RtClientError(self.welcome.get("code", "bad_frame"), self.welcome.get("msg", "expected welcome"))
        self._connected.set()

    async def close(self) -> None:
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            await self.ws.close()
        self._fail_all(ConnectionLost("client closed"))

    async def _read_forever(self) -> None:
        while True:
            assert self.ws is not None
            try:
                async for message in self.ws:
                    self._on_frame(self.codec.decode(message))
            except ConnectionClosed:
                pass
            except GapError:  # a frame was lost on a live connection: start over and resume from what we have
                await self.ws.close()
            self._connected.clear()
            if self._closed or not self.reconnect:
                self._fail_all(ConnectionLost("connection closed"))
                return
            if not await self._reconnect():
                self._fail_all(ConnectionLost("could not reconnect"))
                return

    async def _reconnect(self) -> bool:
        for delay in self.backoff.delays():
            await asyncio.sleep(delay)
            try:
                await self._open()
            except (OSError, ConnectionClosed, TimeoutError, websockets.InvalidHandshake):
                continue
            self.reconnects += 1
            for fut in self._waiting.values():  # replies to requests sent on the old socket will not come
                if not fut.done():
                    fut.set_exception(ConnectionLost("connection lost before the reply"))
            self._waiting.clear()
            self._resuming.clear()
            try:
                for s in list(self.sessions.values()):
                    assert self.ws is not None
                    fid = self._next_id()
                    self._resuming[fid] = s
                    await self.ws.send(
                        self.codec.encode(
                            {
                                "t": "session.resume",
                                "id": fid,
                                "sid": s.sid,
                                "ep": s.tracker.epoch,
                                "last_seq": s.tracker.last_seq,
                            }
                        )
                    )
            except ConnectionClosed:
                continue
            return True
        return False

    def _fail_all(self, exc: BaseException) -> None:
        self._gone = exc
        self._connected.set()  # release senders waiting for a connection that will not come back
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(exc)
        for s in self.sessions.values():
            for turn in [*s.pending.values(), *s.turns.values()]:
                turn._fail(exc)

    def _on_frame(self, f: F.Frame) -> None:
        t, fid = f.get("t"), f.get("id")
        if fid is not None and fid in self._resuming:
            resumed = self._resuming.pop(fid)
            if t == "session":
                resumed._on_resumed(f)  # at once: the replayed frames that follow depend on it
            else:  # the session is gone (closed elsewhere): end what was waiting on it
                self.sessions.pop(resumed.sid, None)
                resumed.closed = True
                for turn in [*resumed.pending.values(), *resumed.turns.values()]:
                    turn._fail(RtClientError(f.get("code", "unknown_session"), f.get("msg", "")))
            return
        if t == "error":
            err = RtClientError(f["code"], f.get("msg", ""), f.get("retry_after"))
            for s in self.sessions.values():
                if fid in s.pending:
                    s.pending.pop(fid)._fail(err)
                    return
            self._acks.pop(fid, None)
            fut = self._waiting.pop(fid, None)
            if fut is not None and not fut.done():
                fut.set_exception(err)
            return
        if t == "session" and fid is not None:
            fut = self._waiting.pop(fid, None)
            if fut is not None and not fut.done():
                fut.set_result(f)
            return
        if "seq" in f and "sid" in f:
            session = self.sessions.get(f["sid"])
            if session is not None:
                session._on_frame(f)
            if t in ("session.updated", "session.closed", "turn.end"):
                self._ack(f)
            return
        if fid is not None:
            fut = self._waiting.pop(fid, None)
            if fut is not None and not fut.done():
                fut.set_result(f)

    def _ack(self, f: F.Frame) -> None:
        # Requests answered by a session frame (update, rollback, close, cancel) complete on it.
        for fid, (sid, kinds) in list(self._acks.items()):
            if sid == f["sid"] and f["t"] in kinds:
                del self._acks[fid]
                fut = self._waiting.pop(fid, None)
                if fut is not None and not fut.done():
                    fut.set_result(f)
                return

    # --- requests ---------------------------------------------------------------------------------------------

    def _send_nowait(self, frame: F.Frame) -> None:
        if self.ws is not None:
            asyncio.get_running_loop().create_task(self._send(frame, frame.get("id")))

    async def _send(self, frame: F.Frame, fid: Any) -> None:
        await self._connected.wait()
        if self._gone is not None:
            raise self._gone
        assert self.ws is not None
        try:
            await self.ws.send(self.codec.encode(frame))
        except ConnectionClosed:
            if not self.reconnect:
                raise ConnectionLost("connection closed") from None
            # The resume after reconnecting resends turns that never started; other requests fail to the caller.

    async def _request(self, frame: F.Frame, expect: str | None = "session") -> F.Frame:
        fid = frame["id"] = self._next_id()
        fut: asyncio.Future[F.Frame] = asyncio.get_running_loop().create_future()
        if expect is None:  # answered by the session frame the operation causes
            self._acks[fid] = (frame["sid"], _ACKS[frame["t"]])
        self._waiting[fid] = fut
        await self._send(frame, fid)
        return await fut

    async def open_session(
        self, *, persona: str | None = None, params: dict[str, Any] | None = None, model: str | None = None
    ) -> Session:
        frame = {"t": "session.open", "persona": persona, "params": params, "model": model}
        reply = await self._request({k: v for k, v in frame.items() if v is not None})
        s = self.sessions[reply["sid"]] = Session(self, reply)
        return s

    async def attach(self, sid: str) -> Session:
        """Join an existing session (another device, a spectator); the reply carries a snapshot."""
        reply = await self._request({"t": "session.open", "sid": sid})
        s = self.sessions[sid] = Session(self, reply)
        return s

    async def ping(self) -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await self._request({"t": "ping"}, expect="pong")
        return loop.time() - t0
