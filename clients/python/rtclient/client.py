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

Credentials: ``token=`` is a string, or a callable (plain or async) that returns a fresh one; it is called on
every connect and reconnect, so a short-lived user token is renewed by the app. A close with 4001
(unauthenticated) or 4003 (forbidden) is final: the client does not retry with the same credential, and
everything waiting fails with ``RtClientError`` of that code.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import websockets
from rtprotocol import Codec, GapError
from rtprotocol import frames as F
from rtprotocol.cardfile import read_card_file
from rtprotocol.recording import Recorder
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from .backoff import Backoff
from .session import Session
from .turn import ConnectionLost, RtClientError, TextMismatch, Turn, TurnResult

__all__ = ["Client", "ConnectionLost", "RtClientError", "Session", "TextMismatch", "Turn", "TurnResult"]


Token = str | Callable[[], str | Awaitable[str]] | None
FINAL_CLOSES = {4001: "unauthenticated", 4003: "forbidden"}  # never a reason to retry as is

_ACKS = {
    "cancel": ("turn.end",),
    "rollback": ("session.updated",),
    "session.update": ("session.updated",),
    "edit": ("session.updated",),
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
        record: str | Path | Recorder | None = None,
        token: Token = None,
    ) -> None:
        """``record``: a file (or a ``Recorder``) that gets every frame sent and received, with its time, in the
        format ``rtserver replay run`` plays back (``rtprotocol.recording``)."""
        self.url, self.subprotocol, self.name = url, subprotocol, name
        self._own_recorder = isinstance(record, (str, Path))
        self.recorder = (
            Recorder.to_file(record, url=url, sub=subprotocol) if isinstance(record, (str, Path)) else record
        )
        self._conn = 0  # this connection's number in the recording
        self.token = token
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
        if self.recorder is not None:
            self._conn = self.recorder.connection()
        hello = {"t": "hello", "client": self.name, "version": "0.1.0"}
        token = await self._token()
        if token:
            hello["token"] = token
        await self._wire(hello)
        try:
            self.welcome = self._decoded(await self.ws.recv())
        except ConnectionClosed as exc:
            final = self._final(exc.rcvd.code if exc.rcvd else None)
            if final is None:
                raise  # an ordinary drop: the caller retries
            raise final from None
        if self.welcome.get("t") != "welcome":
            code = self.welcome.get("code", "bad_frame")
            if code in FINAL_CLOSES.values():
                await self.ws.wait_closed()  # the server closes with 4001/4003 after the error
            raise RtClientError(code, self.welcome.get("msg", "expected welcome"))
        self._connected.set()

    async def _token(self) -> str | None:
        t = self.token
        if t is None or isinstance(t, str):
            return t
        got = t()
        return await got if inspect.isawaitable(got) else got

    @staticmethod
    def _final(code: int | None) -> RtClientError | None:
        """The error a final close code stands for (4001, 4003), else None."""
        if code in FINAL_CLOSES:
            return RtClientError(FINAL_CLOSES[code], f"the server closed the connection with {code}: final")
        return None

    async def close(self) -> None:
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            await self.ws.close()
        self._fail_all(ConnectionLost("client closed"))
        if self._own_recorder and self.recorder is not None:
            self.recorder.close()

    async def _wire(self, frame: F.Frame) -> None:
        """Send one frame on the socket as it is now (recorded first, when recording)."""
        assert self.ws is not None
        if self.recorder is not None:
            self.recorder.log(self._conn, True, frame)
        await self.ws.send(self.codec.encode(frame))

    def _decoded(self, message: str | bytes) -> F.Frame:
        frame: F.Frame = self.codec.decode(message)
        if self.recorder is not None:
            self.recorder.log(self._conn, False, frame)
        return frame

    async def _read_forever(self) -> None:
        while True:
            assert self.ws is not None
            try:
                async for message in self.ws:
                    self._on_frame(self._decoded(message))
            except ConnectionClosed:
                pass
            except GapError:  # a frame was lost on a live connection: start over and resume from what we have
                await self.ws.close()
            self._connected.clear()
            final = self._final(self.ws.close_code)
            if final is not None:
                self._fail_all(final)
                return
            if self._closed or not self.reconnect:
                self._fail_all(ConnectionLost("connection closed"))
                return
            if not await self._reconnect():
                self._fail_all(self._gone or ConnectionLost("could not reconnect"))
                return

    async def _reconnect(self) -> bool:
        for delay in self.backoff.delays():
            await asyncio.sleep(delay)
            try:
                await self._open()
            except (OSError, ConnectionClosed, TimeoutError, websockets.InvalidHandshake):
                continue
            except RtClientError as exc:
                if exc.code not in FINAL_CLOSES.values():
                    continue  # busy, rate_limited at hello: try again after the next delay
                self._gone = exc  # refused credential (4001/4003): final, no more tries
                return False
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
                    resume = {"sid": s.sid, "ep": s.tracker.epoch, "last_seq": s.tracker.last_seq}
                    await self._wire({"t": "session.resume", "id": fid, **resume})
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
            await self._wire(frame)
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
        self,
        *,
        persona: str | None = None,
        params: dict[str, Any] | None = None,
        model: str | None = None,
        card: dict[str, Any] | str | Path | None = None,
        **story: Any,
    ) -> Session:
        """A new session. ``card``: a Character Card V2 map, or the path of a card file (JSON, or a PNG card);
        ``story``: ``user``, ``vars``, ``note``, ``note_depth`` of a card session. A card session's reply
        carries a snapshot (its greetings are its first turns)."""
        if isinstance(card, (str, Path)):
            card = read_card_file(card)
        frame = {"t": "session.open", "persona": persona, "params": params, "model": model, "card": card, **story}
        if card is not None:
            frame["snapshot"] = True
        reply = await self._request({k: v for k, v in frame.items() if v is not None})
        s = self.sessions[reply["sid"]] = Session(self, reply)
        return s

    async def put_card(self, card: dict[str, Any] | str | Path) -> str:
        """Register a card too large for ``session.open`` (a card map or file); returns its ``cid`` for
        ``open_session(card={"cid": cid})``."""
        if isinstance(card, (str, Path)):
            card = read_card_file(card)
        reply = await self._request({"t": "card.put", "card": card}, expect="card")
        return str(reply["cid"])

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
