"""One client connection: decode and validate frames, dispatch them to sessions, and send frames through a
bounded queue.

The transport only adapts frames to session operations and back; everything a frame may do to a session lives
in ``SessionManager``. A client that stops reading overflows its queue and is closed with 4008 (its memory is
freed at once); a peer that stops answering pings is closed by the websockets keepalive.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

import structlog
from rtprotocol import Codec, ProtocolError, decode_msgpack, encode_json, encode_msgpack, validate_client_frame
from rtprotocol import errors as E
from rtprotocol import frames as F
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from .errors import Busy, ClientError, to_error_frame
from .session import Session

if TYPE_CHECKING:
    from .server import Server

log = structlog.get_logger("rtserver.conn")

CLOSE_TIMEOUT = 2.0  # seconds for a closing handshake before the connection is dropped
MAX_BAD_FRAMES = 32  # protocol errors tolerated on one connection before it is closed with 1008


class Connection:
    def __init__(self, ws: ServerConnection, server: Server) -> None:
        self.ws, self.server = ws, server
        self.codec = Codec(ws.subprotocol or F.SUBPROTOCOL_MSGPACK)
        self.binary = self.codec.binary
        self.queue: deque[bytes] = deque()  # msgpack frames
        self.max_queue = server.settings.send_queue
        self._wake = asyncio.Event()
        self.sessions: dict[str, Session] = {}
        self.default_sid: str | None = None
        self.hello = False
        self.bad_frames = 0
        self.closing = False
        self._writing = False  # the writer task is sending: new frames queue behind it, in order
        self.sent = 0
        self._close_after: tuple[int, str] | None = None
        self.frames_in = 0

    # --- sending ----------------------------------------------------------------------------------------------

    def push(self, data: bytes) -> None:
        if self.closing:
            return
        if not self.queue and not self._writing and self._write_now(data):
            return
        if len(self.queue) >= self.max_queue:
            self.queue.clear()
            self.close(E.CLOSE_SLOW_CONSUMER, "send queue full: read your frames")
            return
        self.queue.append(data)
        self._wake.set()

    def _write_now(self, data: bytes) -> bool:
        """The fast path: nothing is queued and the socket's buffer is below its high-water mark, so write the
        frame now instead of waking the writer task (ADR 0004 has the measurements). It uses websockets' sans-I/O
        ``protocol`` and its ``send_data`` flush, the two steps ``send()`` takes itself, minus the per-call async
        context; anything unusual falls back to ``send()``."""
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
            self.server.metrics.errors.labels(frame["code"]).inc()
        self.push(encode_msgpack(frame))

    async def _writer(self) -> None:
        """The slow path: frames that found the socket backed up, sent with websockets' flow control."""
        ws, queue = self.ws, self.queue
        while True:
            await self._wake.wait()
            self._wake.clear()
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
        if not self.hello:
            self.close(E.CLOSE_HELLO_TIMEOUT, "no hello in time")

    def close_after_flush(self, code: int, reason: str) -> None:
        """Close once every frame queued so far has been sent (the last turn.end of a drain, say)."""
        self._close_after = (code, reason)
        self._wake.set()

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
        writer = asyncio.get_running_loop().create_task(self._writer())
        hello_timer = asyncio.get_running_loop().call_later(self.server.settings.hello_timeout, self._hello_due)
        try:
            async for message in self.ws:
                self.frames_in += 1
                await self._on_message(message)
        except ConnectionClosed:
            pass
        finally:
            hello_timer.cancel()
            for s in self.sessions.values():
                self.server.manager.detach(s, self)
            writer.cancel()

    async def _on_message(self, message: bytes | str) -> None:
        frame_id = None
        try:
            frame = validate_client_frame(self.codec.decode(message))
            frame_id = frame.get("id")
            await self._dispatch(frame)
        except (ProtocolError, ClientError, Busy) as exc:
            self.send(to_error_frame(exc, frame_id=frame_id))
            if isinstance(exc, ProtocolError):
                self.bad_frames += 1
                if self.bad_frames > MAX_BAD_FRAMES:
                    self.close(E.CLOSE_POLICY, "too many malformed frames")
        except ConnectionClosed:
            raise
        except Exception as exc:
            log.exception("frame_failed", frame_type=type(exc).__name__)
            self.send(to_error_frame(exc, frame_id=frame_id))

    def _session(self, frame: F.Frame) -> Session:
        sid = frame.get("sid") or self.default_sid
        if sid is None:
            raise ClientError("open or resume a session first, or name it in sid", code="no_session")
        s = self.sessions.get(sid)
        if s is not None and self.server.manager.sessions.get(sid) is s:
            return s
        self.sessions.pop(sid, None)  # closed by another client meanwhile: forget it
        # Known to the server but not attached here: attach implicitly, as session.open with sid would.
        s = self.server.manager.get(sid)
        self._attach(s)
        return s

    def _check_room(self) -> None:
        if len(self.sessions) >= self.server.settings.max_sessions_per_connection:
            raise ClientError(
                f"this connection already has {len(self.sessions)} sessions open; close one "
                "(session.close) or use another connection",
                code="too_many_sessions",
            )

    def _attach(self, s: Session) -> None:
        if s.sid not in self.sessions:
            self._check_room()
        self.sessions[s.sid] = s
        self.default_sid = s.sid
        self.server.manager.attach(s, self)

    async def _dispatch(self, frame: F.Frame) -> None:
        kind = frame["t"]
        fid = frame.get("id")
        m = self.server.manager
        if kind == "ping":
            self.send(F.pong(fid, frame.get("ts")))
            return
        if kind == "hello":
            self.hello = True
            self.send(self.server.welcome())
            return
        if not self.hello:
            raise ClientError("send hello first", code="not_ready")
        if self.server.draining and kind in ("say", "regenerate", "continue", "session.open"):
            raise ClientError("the server is restarting; reconnect and resume", code="shutting_down")
        params = frame.get("params") or {}
        if kind == "session.open":
            if frame.get("sid"):
                s = m.get(frame["sid"])
            else:
                self._check_room()
                s = await m.create(frame.get("persona"), params, frame.get("model"))
            # The reply is queued before attaching, so no live frame can come before it.
            self.send(s.session_frame(frame_id=fid, snapshot=bool(frame.get("snapshot")) or bool(frame.get("sid"))))
            self._attach(s)
        elif kind == "session.resume":
            self._resume(m.get(frame["sid"]), frame["ep"], frame["last_seq"], fid)
        elif kind == "say":
            s = self._session(frame)
            if frame.get("interrupt") and s.running:
                await m.cancel(s)
            m.start_turn(s, "say", frame["text"], params, fid, frame.get("schema"), frame.get("grammar"))
        elif kind in ("regenerate", "continue"):
            m.start_turn(self._session(frame), kind, None, params, fid)
        elif kind == "cancel":
            await m.cancel(self._session(frame))
        elif kind == "rollback":
            await m.rollback(self._session(frame), frame["tid"])
        elif kind == "session.update":
            await m.update(self._session(frame), frame.get("persona"), params)
        elif kind == "session.close":
            s = self._session(frame)
            await m.close_session(s)
            self.sessions.pop(s.sid, None)
            if self.default_sid == s.sid:
                self.default_sid = None

    def _resume(self, s: Session, epoch: str, last_seq: int, fid: Any) -> None:
        """All or nothing: the frames after ``last_seq`` if the log still holds them all, else a snapshot."""
        r = s.log.resume(epoch, last_seq)
        if r.recovered:
            self.send(s.session_frame(frame_id=fid, recovered=True))
            for out in r.items:
                self.push(out)
        else:
            self.send(s.session_frame(frame_id=fid, recovered=False, why=r.why, snapshot=True))
        self._attach(s)
