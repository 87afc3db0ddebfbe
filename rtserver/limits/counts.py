"""Connection counts per client IP shared by every node through Redis: one hash per counted thing and IP, one
field per node holding that node's own count (an absolute number, written at each change, so a lost update
never leaves a count drifting). A decision is one Lua script: the live nodes' fields summed (a node is live while
its heartbeat key ``rt:node:<node>`` exists; a dead node's field is dropped on the way), this node's new count
added, refused past the limit. Nodes renew their heartbeat a few times a second (the protection watch).

Redis failing: ``fail_open`` counts on this node alone, else refuses; after a failure Redis is left alone for a
second. (Single Redis or one shard: the script reads heartbeat keys it is not given, which Redis Cluster forbids.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

log = structlog.get_logger("rtserver.limits")

PREFIX = "rt:count:"
ALIVE = "rt:node:"
# KEYS: one hash per count. ARGV[1]: this node; ARGV[2]: the heartbeat prefix; then per key: new count, limit.
ACQUIRE = """
local totals = {}
for i = 1, #KEYS do
  local total = tonumber(ARGV[1 + 2*i])
  local fields = redis.call('HGETALL', KEYS[i])
  for j = 1, #fields, 2 do
    local node = fields[j]
    if node ~= ARGV[1] then
      if redis.call('EXISTS', ARGV[2] .. node) == 1 then total = total + tonumber(fields[j + 1])
      else redis.call('HDEL', KEYS[i], node) end
    end
  end
  local limit = tonumber(ARGV[2 + 2*i])
  if limit > 0 and total > limit then return {0, i} end
end
for i = 1, #KEYS do
  redis.call('HSET', KEYS[i], ARGV[1], ARGV[1 + 2*i])
  redis.call('EXPIRE', KEYS[i], 86400)
end
return {1, 0}
"""


class SharedCounts:
    def __init__(
        self,
        redis: Any,
        node: str,
        *,
        timeout: float,
        fail_open: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis, self.node, self.timeout, self.fail_open, self.clock = redis, node, timeout, fail_open, clock
        self._acquire = redis.register_script(ACQUIRE)
        self._down_until = 0.0
        self.failures = 0

    async def acquire(self, counts: Sequence[tuple[str, int, int]]) -> bool | None:
        """``counts``: (key, this node's count with the new one, limit). True: counted everywhere; False: over a
        limit across the nodes; None: Redis is not answering (the caller applies its policy)."""
        if self.clock() < self._down_until:
            return None
        args: list[Any] = [self.node, ALIVE]
        for _, n, limit in counts:
            args += [n, limit]
        try:
            async with asyncio.timeout(self.timeout):
                ok, _ = await self._acquire(keys=[PREFIX + k for k, _, _ in counts], args=args)
        except Exception as exc:  # noqa: BLE001 - any Redis failure is an outage here
            self._failed(exc)
            return None
        return bool(int(ok))

    async def set(self, key: str, n: int) -> None:
        """This node's count of ``key`` is now ``n`` (a connection closed, or said hello)."""
        if self.clock() < self._down_until:
            return
        try:
            async with asyncio.timeout(self.timeout):
                if n > 0:
                    await self.redis.hset(PREFIX + key, self.node, n)
                else:
                    await self.redis.hdel(PREFIX + key, self.node)
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)

    async def heartbeat(self, ttl_s: float = 3.0) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self.redis.set(ALIVE + self.node, 1, px=int(ttl_s * 1000))
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self._down_until = self.clock() + 1.0
        log.warning("counts_redis_down", error=type(exc).__name__, policy="open" if self.fail_open else "closed")
