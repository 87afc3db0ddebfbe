"""Turn filter: time to first token, inter-token gaps and turns by reason, recorded once per turn (not per token)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from ..engine.base import Event, Token
from ..metrics import Metrics
from .base import Handler, TurnContext


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
