"""The shapes every filter takes.

    Handler         (TurnContext) -> AsyncIterator[Event]         a running turn's events
    Filter          (TurnContext, Handler) -> AsyncIterator[Event] wraps the running turn (streaming phase)
    AdmitFilter     admit(ctx) before turn.start, may refuse by raising; undo(ctx) if a later one refused
    ConnectionFilter handshake(path, headers) -> refusal or None; frame(frame) before a frame is carried out,
                    refusing it by raising (an error frame; the connection stays open)

Filters hold settings only; per-turn data lives in the ``TurnContext``, per-connection data on the connection.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..engine.base import Event, Request

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
    kind: str = "say"  # what the client asked: say | regenerate | continue
    cache_opt: bool | None = None  # params.cache in effect: True opts in, False bypasses, None: deterministic only
    cache: Literal["hit", "miss"] = "miss"  # turn.end.cache: hit when the reply came from the reply cache


class AdmitFilter(Protocol):
    def admit(self, ctx: TurnContext) -> None: ...
    def undo(self, ctx: TurnContext) -> None: ...


@dataclass
class Refusal:
    """A handshake refused: the HTTP status and a body that says what to do."""

    status: int
    body: str


class ConnectionFilter(Protocol):
    def handshake(self, path: str, headers: dict[str, str]) -> Refusal | None: ...
    def frame(self, frame: dict[str, Any]) -> None: ...
