"""A streaming turn as the application sees it, its result, and the errors a turn or request can end with."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from rtprotocol import frames as F


class RtClientError(Exception):
    """An ``error`` frame from the server: ``code`` from the protocol's registry, ``message`` says what to do."""

    def __init__(self, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.retry_after = code, message, retry_after


class ConnectionLost(Exception):
    """The connection is gone and reconnecting is off or gave up."""


class TextMismatch(Exception):
    """The text assembled from a turn's deltas is not the text the server sent (``turn.end`` ``xlen``/``xcrc``).

    ``result`` is the turn's result with the assembled text; read the server's from a snapshot
    (``await session.refresh()``, then its ``turns``) rather than trusting it."""

    def __init__(self, result: TurnResult, detail: str) -> None:
        super().__init__(f"turn {result.tid}: {detail}")
        self.result, self.detail = result, detail


@dataclass
class TurnResult:
    tid: int
    reason: str
    text: str
    usage: dict[str, int] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    cache: str = "miss"
    error: str | None = None
    parsed: bool | None = None  # for a turn with a schema: whether the reply parsed as JSON
    code: str | None = None  # with reason "error": engine_error, internal, or store_failed (not in the history)
    valid: bool | None = None  # for a turn with a schema: whether the reply fits it ...
    path: str | None = None  # ... and if not, where the first violation is (a JSON pointer)
    lore: list[int | str] | None = None  # a card session's turn: the character book's entries its prompt carried


class Turn:
    """A streaming reply: iterate for text pieces, ``await result()`` for the end."""

    def __init__(self, kind: str, frame: F.Frame) -> None:
        self.kind, self.frame = kind, frame  # the frame that asked for it, resent after a reconnect if unseen
        self.tid: int | None = None
        self.parent: int | None = None
        self.text = ""
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._result: asyncio.Future[TurnResult] = asyncio.get_running_loop().create_future()

    def _start(self, tid: int, parent: int) -> None:
        self.tid, self.parent = tid, parent
        if not self._started.done():
            self._started.set_result(None)

    def _feed(self, text: str) -> None:
        self.text += text
        self._queue.put_nowait(text)

    def _catch_up(self, full: str) -> None:
        """Deliver what the snapshot holds beyond what was already delivered."""
        if len(full) > len(self.text) and full.startswith(self.text):
            self._feed(full[len(self.text) :])

    def _end(self, result: TurnResult) -> None:
        if not self._result.done():
            self._result.set_result(result)
            self._queue.put_nowait(None)

    def _fail(self, exc: BaseException) -> None:
        for fut in (self._started, self._result):
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # it reaches whoever awaits it; nobody awaiting is not an error to log
        self._queue.put_nowait(None)

    @property
    def done(self) -> bool:
        return self._result.done()

    async def __aiter__(self) -> AsyncIterator[str]:
        while (piece := await self._queue.get()) is not None:
            yield piece
        if self._result.done() and self._result.exception() is not None:
            raise self._result.exception()  # type: ignore[misc]

    async def result(self) -> TurnResult:
        return await self._result
