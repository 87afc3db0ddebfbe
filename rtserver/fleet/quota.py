"""Per-user quotas on stored sessions across nodes (see ``sessions.quota``): one Redis set per user,
``rt:user:{<user key>}:sessions``, of their session ids. A claim is one script on that one key (Redis Cluster
safe): under the limit the id is added. At the limit the ids are checked against the sessions' own keys (one
pipeline: they live in other slots), the gone ones removed, and the claim made once more. The set expires with
the user's newest session (``session_ttl``). A claim in flight on another node may be taken for stale at that
moment: the user then keeps one session more than the limit, never fewer."""

from __future__ import annotations

from typing import Any

from ..sessions.quota import over_quota, user_key
from .store import RedisStore, keys

# KEYS[1]: the user's set. ARGV: the session id, the limit, the TTL in ms (0: none). 1: claimed; 0: full.
CLAIM = """
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
"""


def user_set(user: str) -> str:
    return f"rt:user:{{{user_key(user)}}}:sessions"


class RedisQuota:
    def __init__(self, redis: Any, store: RedisStore) -> None:
        self.redis, self.store = redis, store
        self._claim = redis.register_script(CLAIM)
        self._claiming: set[str] = set()  # claimed here and not yet written: not stale

    async def claim(self, user: str, sid: str, limit: int) -> None:
        key, args = user_set(user), [sid, limit, self.store.ttl_ms]
        if not int(await self.store._call("quota", self._claim(keys=[key], args=args))):
            await self._drop_stale(key)
            if not int(await self.store._call("quota", self._claim(keys=[key], args=args))):
                raise over_quota(limit)
        self._claiming.add(sid)

    def written(self, sid: str) -> None:
        self._claiming.discard(sid)

    async def _drop_stale(self, key: str) -> None:
        sids = [m.decode() for m in await self.store._call("quota", self.redis.smembers(key))]
        sids = [s for s in sids if s not in self._claiming]
        pipe = self.redis.pipeline(transaction=False)
        for sid in sids:
            pipe.exists(keys(sid)[0])
        found = await self.store._call("quota", pipe.execute())
        stale = [sid for sid, n in zip(sids, found, strict=True) if not n]
        if stale:
            await self.store._call("quota", self.redis.srem(key, *stale))

    async def release(self, user: str, sid: str) -> None:
        self._claiming.discard(sid)
        await self.store._call("quota", self.redis.srem(user_set(user), sid))
