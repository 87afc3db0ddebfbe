"""rtserver's exception tree, and the one place where exceptions become error frames and close codes.

RtError                     anything rtserver raises on purpose; carries a protocol error ``code``
├── ClientError             the client asked for something it cannot have (bad_field, unknown_session, ...)
│   ├── (rtprotocol.ProtocolError is translated into a ClientError at the boundary)
│   └── Refused             and the connection closes after the error frame: a bad credential (4001), a refused
│                           one (4003), a full connection limit (1013)
├── Busy                    capacity reached; carries ``retry_after``
│   └── RateLimited         a limit of this user or IP (frames, tokens per minute): ``rate_limited``
├── EngineError             the model failed (llama.cpp errors are translated where llama.cpp is called)
├── StoreFailed             a write could not be made durable (disk full, I/O error): nothing was recorded
│   └── Fenced              this node no longer owns the session it tried to write
└── ConfigError             bad settings at start-up; names the key
"""

from __future__ import annotations

from typing import Any

from rtprotocol import ProtocolError
from rtprotocol.frames import Frame, error


class RtError(Exception):
    code = "internal"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ClientError(RtError):
    code = "bad_field"


class Refused(ClientError):
    """Refused, and the connection is closed with ``close`` once the error frame is sent."""

    def __init__(self, message: str, *, code: str, close: int) -> None:
        super().__init__(message, code=code)
        self.close = close


class Busy(RtError):
    code = "busy"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(Busy):
    code = "rate_limited"


class EngineError(RtError):
    code = "engine_error"


class StoreFailed(RtError):
    code = "store_failed"


class Fenced(StoreFailed):
    """This node's generation no longer owns the session: another owner took it over."""


class ConfigError(RtError):
    code = "internal"


def to_error_frame(exc: BaseException, *, frame_id: Any = None, sid: str | None = None) -> Frame:
    """Map any exception to an ``error`` frame; unexpected ones are sanitised (no internals leak)."""
    if isinstance(exc, ProtocolError):
        return error(
            exc.code, exc.message, frame_id=frame_id if frame_id is not None else exc.frame_id, sid=sid or exc.sid
        )
    if isinstance(exc, Busy):
        return error(exc.code, exc.message, frame_id=frame_id, sid=sid, retry_after=exc.retry_after)
    if isinstance(exc, RtError) and not isinstance(exc, ConfigError):
        return error(exc.code, exc.message, frame_id=frame_id, sid=sid)
    return error("internal", "unexpected server error; the session is intact, retry", frame_id=frame_id, sid=sid)
