"""Admit filter and turn filter in one: generated tokens per minute, per user.

A turn's ``max_tokens`` is charged to its user when it is admitted (so a long stream counts while it runs, not
only once it ends) and what it did not generate is given back when it ends, however it ends. A turn over the
limit gets ``error{rate_limited, retry_after}`` before anything starts. Who asked comes from the connection that
carries the frame (``CLIENT``); a turn without a user (auth off) is not limited.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable

from ..engine.base import Event, Finish
from ..errors import RateLimited
from ..limits import Decision, Limit, Limiter
from .base import CLIENT, Handler, Report, TurnContext


class TokensFilter:
    def __init__(self, per_min: float, limiter: Limiter, report: Report) -> None:
        self.per_min, self.limiter, self.report = per_min, limiter, report

    def _limit(self, ctx: TurnContext, cost: float) -> Limit | None:
        client = CLIENT.get()
        p = client.principal if client is not None else None
        if p is not None and p.kind == "key":
            return None  # a trusted backend's many players are not one user
        per_min = p.limit("tokens_per_min", self.per_min) if p is not None else self.per_min
        if not ctx.user or not per_min:
            return None
        return Limit("t:u:" + ctx.user, per_min, cost)

    def admit(self, ctx: TurnContext) -> Awaitable[None] | None:
        client = CLIENT.get()
        if client is not None:
            ctx.user = client.principal.user if client.principal is not None else ""
            ctx.ip = client.ip
        lim = self._limit(ctx, ctx.request.max_tokens)
        if lim is None:
            return None
        decided = self.limiter.take([lim])
        if isinstance(decided, Decision):
            self._check(decided, ctx, lim)
            return None
        return self._check_later(decided, ctx, lim)

    async def _check_later(self, decided: Awaitable[Decision], ctx: TurnContext, lim: Limit) -> None:
        self._check(await decided, ctx, lim)

    def _check(self, d: Decision, ctx: TurnContext, lim: Limit) -> None:
        if not d.allowed:
            client = CLIENT.get()
            if client is not None:
                self.report("rate_limited", client, f"tokens ({int(lim.cost)} reserved)")
            raise RateLimited(
                f"this user's generated tokens per minute are used up; retry in {d.retry_after:g} s",
                retry_after=d.retry_after,
            )
        ctx.reserved = int(lim.cost)

    def undo(self, ctx: TurnContext) -> None:
        """Admitted, never ran: the whole reservation goes back (later, if it needs Redis)."""
        if ctx.reserved:
            self._give_back_now(ctx, ctx.reserved)

    def _give_back_now(self, ctx: TurnContext, n: int) -> None:
        lim = self._limit(ctx, n)
        ctx.reserved = 0
        if lim is None:
            return
        if self.limiter.shared is None:
            self.limiter.local.refund(lim)
        else:
            asyncio.get_running_loop().create_task(self.limiter.refund(lim))

    async def __call__(self, ctx: TurnContext, inner: Handler) -> AsyncIterator[Event]:
        used = 0
        try:
            async for event in inner(ctx):
                if isinstance(event, Finish):
                    used = event.completion_tokens
                yield event
        finally:
            unused = ctx.reserved - used
            if ctx.reserved and unused > 0:
                lim = self._limit(ctx, unused)
                if lim is not None:
                    await self.limiter.refund(lim)
            ctx.reserved = 0
