"""Outermost turn filter: whatever raises inside a turn becomes one ``Finish("error")``, with the traceback in the
log; the stream always ends with exactly one Finish."""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog

from ..engine.base import Event, Finish
from .base import Handler, TurnContext

log = structlog.get_logger("rtserver.turn")


async def errors_filter(ctx: TurnContext, inner: Handler) -> AsyncIterator[Event]:
    finished = False
    try:
        async for event in inner(ctx):
            finished = isinstance(event, Finish)
            yield event
    except Exception:
        log.exception("turn_failed", sid=ctx.sid, tid=ctx.tid, model=ctx.model)
        ctx.code = "internal"
        if not finished:
            yield Finish("error", error="a filter or the engine raised")
        return
    if not finished:
        log.error("turn_unfinished", sid=ctx.sid, tid=ctx.tid, model=ctx.model)
        ctx.code = "internal"
        yield Finish("error", error="the engine ended without finishing the turn")
