"""The shapes every filter takes.

    Handler         (TurnContext) -> AsyncIterator[Event]         a running turn's events
    Filter          (TurnContext, Handler) -> AsyncIterator[Event] wraps the running turn (streaming phase)
    AdmitFilter     admit(ctx) before turn.start, may refuse by raising; undo(ctx) if a later one refused
    ConnectionFilter handshake(path, headers, client) -> refusal or None (HTTP); opened(client) once the socket is
                    a WebSocket, refusing by raising ``Refused`` (closed with its code); frame(frame, client) before
                    a frame is carried out, refusing it by raising (an error frame; the connection stays open unless
                    the error is a ``Refused``), or returning an awaitable for a decision that needs I/O (Redis);
                    closed(client) when the connection ends, whatever ended it

Filters hold settings only; per-turn data lives in the ``TurnContext``, per-connection data in the connection's
``Client`` (its address, credential, principal), which the transport hands to every connection filter and sets
as ``CLIENT`` while it carries out a frame, so an admit filter learns who asked for a turn.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..engine.base import Event, Request
from ..principal import ANONYMOUS, Principal

__all__ = ["ANONYMOUS", "CLIENT", "Client", "Principal", "Refusal", "TurnContext"]

Handler = Callable[["TurnContext"], AsyncIterator[Event]]
Filter = Callable[["TurnContext", Handler], AsyncIterator[Event]]


@dataclass
class TurnContext:
    sid: str
    tid: int
    model: str
    request: Request
    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    ended: float | None = None
    gaps: list[float] = field(default_factory=list)
    structured: bool = False  # the grammar comes from a JSON schema (turn.end says whether the reply parses)
    code: str = ""  # set by a filter that ended the turn itself: the turn.end code (internal)
    user: str = ""  # who asked for the turn (the principal's user; "" without auth) and from where
    ip: str = ""
    reserved: int = 0  # generated tokens charged to the user's limit at admission (reconciled at the end)
    span: Any = None  # the turn's trace span (tracing on)
    admitted_at: float | None = None
    after: list[Callable[[], None]] = field(default_factory=list)  # run once turn.end is sent (after the write)
    kind: str = "say"  # what the client asked: say | regenerate | continue
    cache_opt: bool | None = None  # params.cache in effect: True opts in, False bypasses, None: deterministic only
    cache: Literal["hit", "miss"] = "miss"  # turn.end.cache: hit when the reply came from the reply cache


@dataclass(eq=False)
class Client:
    """One connection as the connection filters see it."""

    peer: str  # the socket's peer address
    ip: str = ""  # the client's address: the peer, or X-Forwarded-For's when the peer is a trusted proxy
    credential: str = ""  # from the Authorization header, if any
    principal: Principal | None = None  # set once authenticated (at the handshake or by hello)
    hello: bool = False  # hello was received
    opened: bool = False  # counted by the limits (so closed() uncounts exactly what was counted)
    close: Callable[[int, str], None] | None = None  # set by the transport: close this connection
    received: float = 0.0  # tracing on: when the frame being carried out arrived (perf_counter)
    traceparent: str = ""  # tracing on: the W3C traceparent of the frame being carried out
    traceparent_hello: str = ""


#: A security event (auth_failed, rate_limited, origin_refused, ...) for the audit log: kind, client, detail.
Report = Callable[[str, "Client", str], None]


def no_report(kind: str, client: Client, detail: str) -> None:
    return None


CLIENT: ContextVar[Client | None] = ContextVar("rtserver_client", default=None)


class AdmitFilter(Protocol):
    def admit(self, ctx: TurnContext) -> Awaitable[None] | None: ...
    def undo(self, ctx: TurnContext) -> None: ...


@dataclass
class Refusal:
    """A handshake refused: the HTTP status and a body that says what to do."""

    status: int
    body: str


class ConnectionFilter(Protocol):
    def handshake(self, path: str, headers: dict[str, str], client: Client) -> Refusal | None: ...
    def opened(self, client: Client) -> Awaitable[None] | None: ...
    def frame(self, frame: dict[str, Any], client: Client) -> Awaitable[None] | None: ...
    def closed(self, client: Client) -> None: ...


class NoConnection:
    """Connection-filter defaults for filters that need only some of the four calls."""

    def handshake(self, path: str, headers: dict[str, str], client: Client) -> Refusal | None:
        return None

    def opened(self, client: Client) -> Awaitable[None] | None:
        return None

    def frame(self, frame: dict[str, Any], client: Client) -> Awaitable[None] | None:
        return None

    def closed(self, client: Client) -> None:
        return None
