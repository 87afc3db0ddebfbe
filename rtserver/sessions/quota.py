"""Per-user quotas on stored sessions: how many sessions a player may keep, open or not (``stored_sessions_per_user``,
or the token's ``stored_sessions`` limit). A new session claims a place in its user's index before it is
written; ``session.close``/``session.delete`` gives the place back.

The index is counted, never the sessions themselves (a user's sessions are scattered among a million files or
keys). Sessions that leave without a word (expired by ``session_ttl``, erased by the CLI, a crash between claim
and write) leave a stale place behind: only when a user reaches the limit are the places checked against the
store and the stale ones dropped, so the count is exact where it matters and costs one small write otherwise.

Embedded: one empty file per session under ``data_dir/users/<user key>/``. Across nodes: ``fleet.quota``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ..errors import ClientError


class Quota(Protocol):
    async def claim(self, user: str, sid: str, limit: int) -> None: ...  # ClientError(session_quota) when full
    def written(self, sid: str) -> None: ...  # the claimed session is in the store now: its place may be checked
    async def release(self, user: str, sid: str) -> None: ...


def user_key(user: str) -> str:
    """A user id as a file or key name: any string a token's ``sub`` may hold, made safe and fixed-length."""
    return hashlib.sha256(user.encode()).hexdigest()[:32]


def over_quota(limit: int) -> ClientError:
    return ClientError(
        f"this user already keeps {limit} stored sessions, the most allowed; "
        "delete one you no longer need (session.delete) before opening another",
        code="session_quota",
    )


class DirQuota:
    def __init__(self, root: Path, stored: Callable[[str], bool]) -> None:
        self.root = root  # data_dir/users
        self.stored = stored  # does the store still hold this session?
        self._lock = asyncio.Lock()  # claims are counted one at a time: two at once must not both take the last
        self._claiming: set[str] = set()  # claimed and not yet written: not stale

    def dir(self, user: str) -> Path:
        return self.root / user_key(user)

    async def claim(self, user: str, sid: str, limit: int) -> None:
        async with self._lock:
            if not await asyncio.to_thread(self._claim, self.dir(user), sid, limit):
                raise over_quota(limit)
            self._claiming.add(sid)

    def written(self, sid: str) -> None:
        self._claiming.discard(sid)

    def _claim(self, d: Path, sid: str, limit: int) -> bool:
        d.mkdir(parents=True, exist_ok=True)
        names = os.listdir(d)
        if len(names) >= limit:
            stale = [n for n in names if n not in self._claiming and not self.stored(n)]
            for n in stale:
                (d / n).unlink(missing_ok=True)
            if len(names) - len(stale) >= limit:
                return False
        (d / sid).touch()
        return True

    async def release(self, user: str, sid: str) -> None:
        self._claiming.discard(sid)
        await asyncio.to_thread((self.dir(user) / sid).unlink, missing_ok=True)

    def erase(self, user: str) -> None:
        """``sessions erase --user``: the user's index goes with their sessions."""
        d = self.dir(user)
        for n in os.listdir(d) if d.exists() else ():
            (d / n).unlink(missing_ok=True)
        if d.exists():
            d.rmdir()
