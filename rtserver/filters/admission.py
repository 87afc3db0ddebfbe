"""Admit filter and turn filter in one: a new turn gets ``busy`` at once when the engine's queue is too long
(``Admission`` decides), and its place is given back when the running turn ends, however it ends."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from ..admission import Admission
from ..engine.base import Event
from .base import Handler, TurnContext


class AdmissionFilter:
    def __init__(self, per_model: dict[str, Admission]) -> None:
        self.per_model = per_model

    def admit(self, ctx: TurnContext) -> None:
        self.per_model[ctx.model].admit(ctx.request.priority)  # raises Busy

    def undo(self, ctx: TurnContext) -> None:
        self.per_model[ctx.model].release(ctx.request.priority)

    async def __call__(self, ctx: TurnContext, inner: Handler) -> AsyncIterator[Event]:
        try:
            async for event in inner(ctx):
                yield event
        finally:
            self.per_model[ctx.model].done(time.perf_counter() - ctx.started, ctx.request.priority)
