"""Rate limits per user and per client IP: GCRA in process (``gcra``), or in Redis shared by every node
(``shared``), behind one ``Limiter`` that the limit filters call."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

from .gcra import ALLOWED, Decision, Gcra, Limit
from .shared import SharedLimiter

__all__ = ["ALLOWED", "Decision", "Gcra", "Limit", "Limiter", "SharedLimiter"]


class Limiter:
    """In process, a decision is a plain call (no await on the per-frame path); shared, it is one Redis script."""

    def __init__(self, local: Gcra, shared: SharedLimiter | None = None) -> None:
        self.local, self.shared = local, shared

    def take(self, limits: Sequence[Limit]) -> Decision | Awaitable[Decision]:
        return self.local.take(limits) if self.shared is None else self.shared.take(limits)

    async def refund(self, lim: Limit) -> None:
        if self.shared is None:
            self.local.refund(lim)
        else:
            await self.shared.refund(lim)
