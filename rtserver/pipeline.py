"""The turn pipeline: one handler type, and every turn concern a filter around it, built once.

    Handler = Callable[[TurnContext], AsyncIterator[Event]]
    Filter  = Callable[[TurnContext, Handler], AsyncIterator[Event]]

``build_pipeline`` is the one place that decides the order (outermost first):

    errors   any exception becomes ``Finish("error")``: the stream always ends with exactly one Finish
    metrics  time to first token, inter-token gaps, turns by reason (recorded once per turn, not per token)
    engine   the model chosen by the session

Later work adds the guard (rate limits) and the reply cache between metrics and engine.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial

import structlog

from .engine.base import Engine, Event, Finish, Request, Token
from .errors import RtError
from .metrics import Metrics

Handler = Callable[["TurnContext"], AsyncIterator[Event]]
Filter = Callable[["TurnContext", Handler], AsyncIterator[Event]]

log = structlog.get_logger("rtserver.turn")


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


async def errors_filter(ctx: TurnContext, inner: Handler) -> AsyncIterator[Event]:
    finished = False
    try:
        async for event in inner(ctx):
            finished = isinstance(event, Finish)
            yield event
    except Exception as exc:
        log.error("turn_failed", sid=ctx.sid, tid=ctx.tid, error=type(exc).__name__, detail=str(exc)[:200])
        if not finished:
            yield Finish("error", error=exc.message if isinstance(exc, RtError) else "internal error")
        return
    if not finished:
        yield Finish("error", error="the engine ended without finishing the turn")


class MetricsFilter:
    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    async def __call__(self, ctx: TurnContext, inner: Handler) -> AsyncIterator[Event]:
        last = ctx.started
        gaps = ctx.gaps
        async for event in inner(ctx):
            now = time.perf_counter()
            if isinstance(event, Token):
                if ctx.first_token is None:
                    ctx.first_token = now
                else:
                    gaps.append(now - last)
                last = now
            else:
                ctx.ended = now
                self._m.turn_done(ctx.model, event.reason, ctx.first_token and ctx.first_token - ctx.started, gaps)
            yield event


def engine_handler(engines: dict[str, Engine]) -> Handler:
    def handle(ctx: TurnContext) -> AsyncIterator[Event]:
        return engines[ctx.model].generate(ctx.request)

    return handle


def build_pipeline(engines: dict[str, Engine], metrics: Metrics) -> Handler:
    handler = engine_handler(engines)
    for filt in (MetricsFilter(metrics), errors_filter):  # innermost first; errors ends up outermost
        handler = partial(filt, inner=handler)
    return handler
