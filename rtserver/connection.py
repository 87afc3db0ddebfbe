"""One client connection: bytes in and out. Frames are decoded and validated, the sans-I/O core
(``rtprotocol.core``) says what each asks for, and this module carries that out through session handles.

Who the client is (``Client``: address, principal) is set by the connection filters; a session belongs to the
user who opened it, and attaching to it, resuming it or acting on it needs that user's credential, or a
read-only spectator grant (the token's ``ro`` claim, ``session.open{sid, mode: "ro"}``) whose writes are
answered ``read_only``.

Frames go out through a bounded queue: a client that stops reading overflows it and is closed with 4008 (its
memory is freed at once); a peer that stops answering pings is closed by the websockets keepalive.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, Protocol

import structlog
from rtprotocol import (
    BadFrameBudget,
    Codec,
    ProtocolError,
    decode_msgpack,
    encode_json,
    encode_msgpack,
    validate_client_frame,
)
from rtprotocol import core as C
from rtprotocol import errors as E
from rtprotocol import frames as F
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from .errors import ClientError, Refused, RtError, to_error_frame
from .filters import Pipeline
from .filters.base import ANONYMOUS, CLIENT, Client
from .limits.sessions import UserSessions
from .metrics import Metrics
from .replay.serverside import ServerRecording
from .sessions.handle import SessionHandle, Sessions
from .settings import Settings

log = structlog.get_logger("rtserver.conn")
_EMPTY: deque[bytes] = deque(maxlen=0)  # every connection's queue until it first needs one: shared, always empty

CLOSE_TIMEOUT = 2.0  # seconds for a closing handshake before the connection is dropped


class Host(Protocol):
    """What a connection needs of the server around it."""

    settings: Settings
    metrics: Metrics
    sessions: Sessions
    pipeline: Pipeline
    user_sessions: UserSessions

    def welcome(self) -> F.Frame: ...
    async def erased(self, sid: str) -> None: ...


WRITES = (C.Turn, C.Cancel, C.Rollback, C.Update, C.Close)


class Connection:
    def __init__(self, ws: ServerConnection, host: Host, client: Client | None = None) -> None:
        self.ws, self.host = ws, host
        self.client = client or Client(peer="")
        self.client.close = self.close
        self.read_only: set[str] = set()  # sessions this connection watches as a spectator
        s = host.settings
        self.codec = Codec(ws.subprotocol or F.SUBPROTOCOL_MSGPACK)
        self.binary = self.codec.binary
        self.core = C.ConnectionCore(s.max_sessions_per_connection)
        self.budget = BadFrameBudget(s.bad_frames_burst, s.bad_frames_per_s)
        self.handles: dict[str, SessionHandle] = {}
        # The slow path (a queue and a writer task) is made the first time a frame finds the socket backed up:
        # most connections never need it, and an idle connection's memory is what a node's capacity is.
        self.queue: deque[bytes] = _EMPTY
        self.max_queue = s.send_queue
        self._wake: asyncio.Event | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._hello_timer: asyncio.TimerHandle | None = None
        self.closing = False
        self._writing = False  # the writer task is sending: new frames queue behind it, in order
        self.sent = 0
        self._close_after: tuple[int, str] | None = None
        self.frames_in = 0
        self.who = {"id": secrets.token_hex(4), "client": ""}  # what presence shows of this connection
        self.presence = False  # hello.presence: send join/leave frames of the sessions attached
        self.recording = ServerRecording.of(s)  # replay recordings of chosen sessions (None: not asked for)

    # --- sending ----------------------------------------------------------------------------------------------

    def push(self, data: bytes) -> None:
        if self.closing:
            return
        if self.recording is not None:
            self.recording.sent(data)
        if not self.queue and not self._writing and self._write_now(data):
            return
        if len(self.queue) >= self.max_queue:
            self.queue.clear()
            self.close(E.CLOSE_SLOW_CONSUMER, "send queue full: read your frames")
            return
        self._slow_path().append(data)

    def _slow_path(self) -> deque[bytes]:
        if self._wake is None:
            self.queue, self._wake = deque(), asyncio.Event()
            self._writer_task = asyncio.get_running_loop().create_task(self._writer())
        self._wake.set()
        return self.queue

    def _write_now(self, data: bytes) -> bool:
        """The fast path: nothing is queued and the socket's buffer is below its high-water mark, so write the
        frame now instead of waking the writer task (ADR 0004). It uses websockets' sans-I/O ``protocol`` and
        its ``send_data`` flush, the two steps ``send()`` takes itself; anything unusual falls back to ``send()``."""
        ws = self.ws
        transport = ws.transport
        if (
            ws.protocol.state is not State.OPEN
            or transport.is_closing()
            or transport.get_write_buffer_size() > ws.write_limit_high
        ):
            return False
        if self.binary:
            ws.protocol.send_binary(data)
        else:
            ws.protocol.send_text(self._as_json(data).encode())
        ws.send_data()
        self.sent += 1
        return True

    def send(self, frame: F.Frame) -> None:
        if frame["t"] == "error":
            self.host.metrics.errors.labels(frame["code"]).inc()
        self.push(encode_msgpack(frame))

    async def _writer(self) -> None:
        """The slow path: frames that found the socket backed up, sent with websockets' flow control."""
        ws, queue, wake = self.ws, self.queue, self._wake
        assert wake is not None
        while True:
            await wake.wait()
            wake.clear()
            self._writing = True
            try:
                while queue:
                    data = queue.popleft()
                    await ws.send(data if self.binary else self._as_json(data))
                    self.sent += 1
            except ConnectionClosed:
                return  # the reader sees the close too and cleans up
            self._writing = False
            if self._close_after is not None:
                self.close(*self._close_after)
                return

    @staticmethod
    def _as_json(data: bytes) -> str:
        # rt.v1.json is for debugging and devtools: its frames are rendered from the msgpack bytes per client.
        return encode_json(decode_msgpack(data))

    def _hello_due(self) -> None:
        if not self.core.hello:
            self.close(E.CLOSE_HELLO_TIMEOUT, "no hello in time")

    def close_after_flush(self, code: int, reason: str) -> None:
        """Close once every frame queued so far has been sent (the last turn.end of a drain, say)."""
        if not self.queue and not self._writing:
            self.close(code, reason)
            return
        self._close_after = (code, reason)
        self._slow_path()

    def close(self, code: int, reason: str) -> None:
        if not self.closing:
            self.closing = True
            log.info("closing", code=code, reason=reason)
            asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        # A peer that does not read never takes the close frame off a full socket: give it the close timeout,
        # then drop the connection rather than hold its buffers until the heartbeat notices.
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.ws.close(code, reason)
        except TimeoutError:
            self.ws.transport.abort()

    # --- receiving --------------------------------------------------------------------------------------------

    async def run(self) -> None:
        ws = self.ws
        # The handshake's headers are not needed once it is done (websockets keeps the request object itself as
        # the sign that the handshake happened, so only its headers go).
        ws.response = None
        if ws.request is not None:
            ws.request.headers.clear()
        self._hello_timer = asyncio.get_running_loop().call_later(self.host.settings.hello_timeout, self._hello_due)
        CLIENT.set(self.client)  # this task's context: admit filters learn who asked for a turn
        try:
            for f in self.host.pipeline.connection:
                pending = f.opened(self.client)
                if pending is not None:
                    await pending
        except Refused as exc:
            self.close(exc.close, exc.message)
        try:
            async for message in ws:
                self.frames_in += 1
                if len(message) > self.host.settings.max_frame_bytes and not self._card_put(message):
                    self.closing = True
                    await self._close(E.CLOSE_TOO_BIG, "frame over welcome.limits.max_frame_bytes")
                    return
                await self._on_message(message)
        except ConnectionClosed:
            pass
        finally:
            if self._hello_timer is not None:
                self._hello_timer.cancel()
            for h in self.handles.values():
                h.detach(self)
                self.host.user_sessions.closed(self._quota_user)
            if self._writer_task is not None:
                self._writer_task.cancel()
            for f in self.host.pipeline.connection:
                f.closed(self.client)
            if self.recording is not None:
                self.recording.close()

    def _card_put(self, message: bytes | str) -> bool:
        """Whether a frame over ``max_frame_bytes`` is a ``card.put`` (whose limit, ``max_card_bytes``, the socket
        enforces)."""
        try:
            frame = self.codec.decode(message)
        except Exception:
            return False
        return isinstance(frame, dict) and frame.get("t") == "card.put"

    async def _on_message(self, message: bytes | str) -> None:
        if self.closing:
            return  # refused when it opened, or closing for another reason: nothing more is carried out
        frame: Any = None
        try:
            frame = validate_client_frame(self.codec.decode(message))
            frame = self.codec.decode(message)
            if self.recording is not None:
                self.recording.received(frame)
            frame = validate_client_frame(frame)
            if frame["t"] == "hello":
                self.who["client"] = str(frame.get("client") or "")[:64]
                self.presence = bool(frame.get("presence"))
            for f in self.host.pipeline.connection:
                pending = f.frame(frame, self.client)
                if pending is not None:
                    await pending
            await self._do(self.core.receive(frame))
        except ProtocolError as exc:
            self._refuse(exc, frame)
            if BadFrameBudget.counts(exc.code) and not self.budget.spend(asyncio.get_running_loop().time()):
                self.close(E.CLOSE_POLICY, "malformed frames faster than welcome.limits.bad_frames_per_s")
        except Refused as exc:
            self._refuse(exc, frame)
            self.close_after_flush(exc.close, exc.message[:120])
        except RtError as exc:
            self._refuse(exc, frame)
        except ConnectionClosed:
            raise
        except Exception:
            log.exception("frame_failed", frame_type=frame.get("t") if isinstance(frame, dict) else None)
            self._refuse(Exception(), frame)

    def _refuse(self, exc: BaseException, frame: Any) -> None:
        fid = frame.get("id") if isinstance(frame, dict) else None
        sid = frame.get("sid") if isinstance(frame, dict) and isinstance(frame.get("sid"), str) else None
        self.send(to_error_frame(exc, frame_id=fid, sid=sid))

    async def _do(self, a: C.Action) -> None:
        sessions = self.host.sessions
        if isinstance(a, C.Reply):
            self.send(a.frame)
        elif isinstance(a, C.Hello):
            if self._hello_timer is not None:
                self._hello_timer.cancel()
                self._hello_timer = None
            self.send(self.host.welcome())
        elif isinstance(a, C.Open):
            quota = (self.client.principal or ANONYMOUS).stored_sessions(self.host.settings.stored_sessions_per_user)
            async with self._room_for_user(None):
                h = await sessions.open(a.persona, a.params, a.model, a.card, a.story, user=self.user, quota=quota)
                self.send(h.frame(a.frame_id, snapshot=a.snapshot))  # queued before attaching: no live frame first
                self._attach(h)
        elif isinstance(a, C.PutCard):
            reply = {"t": "card", **await sessions.put_card(a.card)}
            if a.frame_id is not None:
                reply["id"] = a.frame_id
            self.send(reply)
        elif isinstance(a, C.Attach):
            async with self._room_for_user(a.sid):
                h = await sessions.get(a.sid)
                self._may_attach(h, read_only=a.mode == "ro")
                self.send(h.frame(a.frame_id, snapshot=True))
                self._attach(h)
        elif isinstance(a, C.Resume):
            async with self._room_for_user(a.sid):
                h = await sessions.get(a.sid)
                self._may_attach(h, read_only=False)
                reply, missed = await h.resume(a.epoch, a.last_seq, a.frame_id)
                self.send(reply)
                for data in missed:
                    self.push(data)
                self._attach(h)
        elif isinstance(a, C.SessionAction):
            if isinstance(a, WRITES) and a.sid in self.read_only:
                raise ClientError("this attachment is read-only (a spectator grant)", code="read_only")
            await self._on_session(await self._handle(a), a)

    @property
    def user(self) -> str:
        return (self.client.principal or ANONYMOUS).user

    def _may_attach(self, h: SessionHandle, *, read_only: bool) -> None:
        """Another user's session: refused, or watched read-only with a grant (resuming it stays read-only)."""
        if (self.client.principal or ANONYMOUS).attaches_read_only(h.user, h.sid, read_only):
            self.read_only.add(h.sid)

    async def _on_session(self, h: SessionHandle, a: C.SessionAction) -> None:
        if isinstance(a, C.Turn):
            if a.interrupt:
                await h.cancel(if_running=True)
            await h.turn(a.kind, a.text, a.params, a.frame_id, schema=a.schema, grammar=a.grammar)
        elif isinstance(a, C.Cancel):
            await h.cancel()
        elif isinstance(a, C.Rollback):
            await h.rollback(a.tid)
        elif isinstance(a, C.Update):
            await h.update(a.persona, a.params, a.story)
        elif isinstance(a, C.Edit):
            await h.edit(a.tid, a.user, a.reply)
        elif isinstance(a, C.Close):
            await h.close()
            self._forget(h.sid)
            self.core.detached(h.sid)
            await self.host.user_sessions.settled()  # the other nodes know of the free place before the next frame
            if isinstance(a, C.Delete):
                await self.host.erased(h.sid)

    async def _handle(self, a: C.SessionAction) -> SessionHandle:
        h = self.handles.get(a.sid)
        if h is not None and h.alive:
            return h
        self._forget(a.sid)  # closed by another client meanwhile: forget it
        self.core.detached(a.sid)
        async with self._room_for_user(a.sid):
            h = await self.host.sessions.get(a.sid)  # not attached here: attach, as session.open with sid would
            self._may_attach(h, read_only=False)
            if a.sid in self.read_only and isinstance(a, WRITES):
                raise ClientError("this attachment is read-only (a spectator grant)", code="read_only")
            self._attach(h)
        return h

    def _attach(self, h: SessionHandle) -> None:
        if self.recording is not None:
            self.recording.attached(h.sid)
        if h.sid not in self.handles:
            self.host.user_sessions.opened(self._quota_user)
        self.handles[h.sid] = h
        self.core.attached_to(h.sid)
        h.attach(self)

    def _forget(self, sid: str) -> None:
        if self.handles.pop(sid, None) is not None:
            self.host.user_sessions.closed(self._quota_user)

    @property
    def _quota_user(self) -> str:
        return (self.client.principal or ANONYMOUS).player

    def _room_for_user(self, sid: str | None) -> AbstractAsyncContextManager[None]:
        """A place for one more of the user's open sessions while the block attaches one (none needed when
        ``sid`` is attached here already)."""
        if sid is not None and sid in self.handles:
            return nullcontext()
        return self.host.user_sessions.place(self._quota_user)
