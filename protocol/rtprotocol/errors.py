"""The error-code registry of protocol v1 (mirrored in PROTOCOL.md, "Error codes") and the close codes.

An ``error`` frame carries one of these codes; the socket stays open unless a close code is named.
"""

from __future__ import annotations

from typing import Final

#: code -> what the client should do. The spec's table is generated from the same words.
ERROR_CODES: Final[dict[str, str]] = {
    "bad_frame": "The frame could not be decoded (not msgpack/JSON, or not a map). Fix the encoder.",
    "bad_field": "A field is missing or has the wrong type or value. The message names the field.",
    "unknown_type": "The frame type is not part of protocol v1. Check the spelling or the server version.",
    "too_large": "The frame or the text exceeds the limit announced in `welcome.limits`. Send less.",
    "not_ready": "Send `hello` first.",
    "no_session": "The frame needs a session: open or resume one first, or name it in `sid`.",
    "unknown_session": "No such session (closed, or never existed). Open a new one.",
    "turn_running": "A turn is already running in this session. Wait for `turn.end`, `cancel`, or send `say` "
    "with `interrupt: true`.",
    "no_turn": "Nothing to cancel: no turn is running.",
    "nothing_to_regenerate": "The session has no reply to regenerate or continue.",
    "unknown_turn": "No such turn id in this session.",
    "too_many_sessions": "This connection has as many sessions open as `welcome.limits.sessions_per_connection` "
    "allows. Close one or use another connection.",
    "session_quota": "This user keeps as many stored sessions as the server allows (`stored_sessions_per_user`, "
    "or the token's `limits.stored_sessions`). Delete one with `session.delete` before opening another.",
    "rate_limited": "Too many frames. Wait `retry_after` seconds.",
    "busy": "The server is at capacity. Retry after `retry_after` seconds.",
    "unknown_model": "The model named in `session.open` is not configured on this server.",
    "read_only": "This attachment is read-only.",
    "engine_error": "The model failed on this turn; the turn ended with reason `error`. Retry the turn.",
    "store_failed": "The turn could not be written to the store (`turn.end{reason: error, code: store_failed}`): "
    "it is not in the history and its `tid` is never given again. The session is intact; retry the turn.",
    "node_lost": "Only in `snap.turns[].code`, never an `error` frame: the node running the turn died before it "
    'ended (§3, "Across nodes"). The session is intact on another node; send the turn again.',
    "internal": "An unexpected server error. The session is intact; retry, and report it if it persists.",
    "shutting_down": "The server is restarting. Reconnect and resume.",
    "unauthenticated": "No valid credential (`hello.token` or the `Authorization` header); the connection closes "
    "with 4001. Get a fresh token before reconnecting.",
    "forbidden": "The credential does not allow this (another user's session, a model or persona outside the "
    "token's claims). Do not retry with the same credential.",
}

# WebSocket close codes (RFC 6455 and the registered 4000-4999 private range).
CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_POLICY: Final = 1008
CLOSE_TOO_BIG: Final = 1009
CLOSE_INTERNAL: Final = 1011
CLOSE_RESTART: Final = 1012
CLOSE_SLOW_CONSUMER: Final = 4008  # the client did not read its frames; the send queue overflowed
CLOSE_HELLO_TIMEOUT: Final = 4010  # no `hello` within the handshake timeout
CLOSE_UNAUTHENTICATED: Final = 4001  # missing, malformed, expired or unknown credential: final, do not retry as is
CLOSE_FORBIDDEN: Final = 4003  # a known credential that is refused (a revoked key): final
CLOSE_TRY_LATER: Final = 1013  # a connection limit (per IP or user) is full: retry with backoff

CLOSE_CODES: Final[dict[int, str]] = {
    CLOSE_NORMAL: "Normal closure.",
    CLOSE_GOING_AWAY: "The server is going away; reconnect elsewhere.",
    CLOSE_PROTOCOL_ERROR: "WebSocket protocol violation.",
    CLOSE_POLICY: "Policy violation: malformed frames came faster than `welcome.limits.bad_frames_burst` and "
    "`bad_frames_per_s` allow.",
    CLOSE_TOO_BIG: "A frame exceeded the maximum message size.",
    CLOSE_INTERNAL: "Internal error, or no pong within the heartbeat timeout (a dead peer). Reconnect and resume.",
    CLOSE_RESTART: "Server restart: reconnect with backoff and `session.resume`.",
    CLOSE_SLOW_CONSUMER: "The client did not read its frames fast enough; reconnect and resume.",
    CLOSE_HELLO_TIMEOUT: "No `hello` within the hello timeout (10 s by default).",
    CLOSE_UNAUTHENTICATED: "Unauthenticated: the credential is missing, malformed, expired or unknown. Final: get a "
    "fresh token (the reference clients call their token callback) before connecting again.",
    CLOSE_FORBIDDEN: "Forbidden: the credential is known but refused (a revoked key). Final: do not reconnect with it.",
    CLOSE_TRY_LATER: "Try again later: a connection limit of this client's IP or user is full. Reconnect with backoff.",
}


class ProtocolError(Exception):
    """A frame that breaks protocol v1. ``code`` is from ``ERROR_CODES``; ``frame_id`` echoes the client's ``id``."""

    def __init__(self, code: str, message: str, *, frame_id: str | int | None = None, sid: str | None = None) -> None:
        assert code in ERROR_CODES, code
        super().__init__(message)
        self.code = code
        self.message = message
        self.frame_id = frame_id
        self.sid = sid
