"""Open sessions per user: how many sessions a user's connections hold attached at once, on this node and, with
Redis, on every node together (``SharedCounts``, one count per user: ``s:<user>``). It applies to user tokens
(players); API keys belong to trusted backends that multiplex many players."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ..errors import Busy, ClientError
from .counts import SharedCounts


class UserSessions:
    def __init__(self, limit: int, counts: SharedCounts | None = None) -> None:
        self.limit = limit  # 0: no limit
        self.counts = counts
        self.open: Counter[str] = Counter()

    def check(self, user: str) -> None:
        if self.limit and user and self.open[user] >= self.limit:
            raise ClientError(
                f"this user has {self.open[user]} sessions open (the limit is {self.limit}); close one first",
                code="too_many_sessions",
            )

    @asynccontextmanager
    async def place(self, user: str) -> AsyncIterator[None]:
        """Room for one more session of ``user`` while the block attaches it (``opened`` counts it here). With
        Redis the place is taken across the nodes first, and given back if the block fails."""
        self.check(user)
        if self.counts is None or not user or not self.limit:
            yield
            return
        ok = await self.counts.acquire([("s:" + user, self.open[user] + 1, self.limit)])
        if ok is False:
            raise ClientError(
                f"this user has {self.limit} sessions open across the nodes, the most allowed; close one first",
                code="too_many_sessions",
            )
        if ok is None and not self.counts.fail_open:
            raise Busy("the limits store (Redis) is not answering; retry shortly", retry_after=1.0)
        try:
            yield
        except BaseException:
            self._share(user)
            raise

    def opened(self, user: str) -> None:
        if user:
            self.open[user] += 1

    def closed(self, user: str) -> None:
        if user:
            self.open[user] -= 1
            self._share(user)
            if self.open[user] <= 0:
                del self.open[user]

    def _share(self, user: str) -> None:
        if self.counts is not None and self.limit:
            self.counts.tell("s:" + user, self.open[user])

    async def settled(self) -> None:
        """Every count told to the other nodes so far has been written."""
        if self.counts is not None:
            await self.counts.settled()
