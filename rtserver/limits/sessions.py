"""Open sessions per user (per node): how many sessions a user's connections hold attached at once. It applies
to user tokens (players); API keys belong to trusted backends that multiplex many players."""

from __future__ import annotations

from collections import Counter

from ..errors import ClientError


class UserSessions:
    def __init__(self, limit: int) -> None:
        self.limit = limit  # 0: no limit
        self.open: Counter[str] = Counter()

    def check(self, user: str) -> None:
        if self.limit and user and self.open[user] >= self.limit:
            raise ClientError(
                f"this user has {self.open[user]} sessions open (the limit is {self.limit}); close one first",
                code="too_many_sessions",
            )

    def opened(self, user: str) -> None:
        if user:
            self.open[user] += 1

    def closed(self, user: str) -> None:
        if user:
            self.open[user] -= 1
            if self.open[user] <= 0:
                del self.open[user]
