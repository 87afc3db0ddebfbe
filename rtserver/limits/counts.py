"""Connection counts per client IP shared by every node through Redis: one hash per counted thing and IP, one
field per node holding that node's own count (an absolute number, so a lost update never leaves a count
drifting) and the number of the change that wrote it (a node's calls may reach Redis out of order: an older
count never overwrites a newer one). A decision is one Lua script: the live nodes' counts summed, this node's
new count added, refused past the limit.

Which nodes are live is kept in one sorted set, ``rt:count:nodes``, each node scored with the time its
heartbeat lapses; every heartbeat (a few a second, the protection watch) also reads it back. Every write is
given that view: dead nodes' fields are dropped, and the others counted, a node not in the view (one started
since the last heartbeat) too. A dead node stays in the view for two days, longer than a count key lives
untouched (a day), so none of its fields outlives it there. The scripts touch only the keys they are given, and
the keys of one IP share a hash tag: Redis Cluster safe.

Redis failing: ``fail_open`` counts on this node alone, else refuses; after a failure Redis is left alone for a
second.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

log = structlog.get_logger("rtserver.limits")

PREFIX = "rt:count:"
NODES = "rt:count:nodes"
KEY_TTL_S = 86_400  # a count key untouched this long goes
KEEP_DEAD_MS = 2 * KEY_TTL_S * 1000  # a dead node stays on the list this long, so the fields it left are dropped
# A field's value is "<count>:<change>". ARGV[1]: this node; ARGV[2]: n, then n pairs of a node in the view and its
# state ("1" live, "0" dead); then the per-key arguments. ``others(key)``: the other nodes' counts summed, dead
# nodes' fields dropped; ``put(key, value)``: this node's, unless the field holds a later change.
COMMON = """
local known, n = {}, tonumber(ARGV[2])
for i = 1, n do known[ARGV[1 + 2*i]] = ARGV[2 + 2*i] end
local function count(value) return tonumber(string.match(value, '^(%d+)')) end
local function others(key)
  local total, fields = 0, redis.call('HGETALL', key)
  for j = 1, #fields, 2 do
    if known[fields[j]] == '0' then redis.call('HDEL', key, fields[j])
    elseif fields[j] ~= ARGV[1] then total = total + count(fields[j + 1]) end
  end
  return total
end
local function put(key, value)
  local old = redis.call('HGET', key, ARGV[1])
  if old and tonumber(string.match(old, ':(%d+)$')) > tonumber(string.match(value, ':(%d+)$')) then return end
  redis.call('HSET', key, ARGV[1], value)
  redis.call('EXPIRE', key, KEY_TTL)
end
local at = 2 + 2*n
""".replace("KEY_TTL", str(KEY_TTL_S))
# KEYS: one hash per count. Per key: this node's new value, the limit.
ACQUIRE = (
    COMMON
    + """
for i = 1, #KEYS do
  local limit = tonumber(ARGV[at + 2*i])
  if limit > 0 and others(KEYS[i]) + count(ARGV[at + 2*i - 1]) > limit then return {0, i} end
end
for i = 1, #KEYS do put(KEYS[i], ARGV[at + 2*i - 1]) end
return {1, 0}
"""
)
# KEYS[1]: one count; then this node's new value.
SET = (
    COMMON
    + """
others(KEYS[1])
put(KEYS[1], ARGV[at + 1])
"""
)
# KEYS[1]: the node list. ARGV: this node, its heartbeat's TTL in ms, how long dead nodes are kept (ms).
# Returns the view: node, "1" (live) or "0" (dead), ...
HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
local view = {}
local function add(nodes, state)
  for _, n in ipairs(nodes) do view[#view + 1] = n; view[#view + 1] = state end
end
add(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf'), '1')
add(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now), '0')
return view
"""


def key(counted: str) -> str:
    """``c:<ip>`` (connections) and ``p:<ip>`` (not yet said hello) share the IP's hash tag: one slot."""
    kind, _, ip = counted.partition(":")
    return f"{PREFIX}{{{ip}}}:{kind}"


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
        self._set = redis.register_script(SET)
        self._heartbeat = redis.register_script(HEARTBEAT)
        self.known: list[str] = []  # node, "1" (live) or "0" (its heartbeat lapsed), ...: the last heartbeat's view
        # Changes are numbered from this start's wall-clock time: a restarted node's outnumber its last life's.
        self._changes = itertools.count(int(time.time() * 1e6))
        self._told: set[asyncio.Task[None]] = set()
        self._down_until = 0.0
        self.failures = 0

    def _view(self) -> list[Any]:
        return [self.node, len(self.known) // 2, *self.known]

    def _value(self, n: int) -> str:
        return f"{n}:{next(self._changes)}"

    async def acquire(self, counts: Sequence[tuple[str, int, int]]) -> bool | None:
        """``counts``: (key, this node's count with the new one, limit). True: counted everywhere; False: over a
        limit across the nodes; None: Redis is not answering (the caller applies its policy)."""
        if self.clock() < self._down_until:
            return None
        args: list[Any] = self._view()
        for _, n, limit in counts:
            args += [self._value(n), limit]
        try:
            async with asyncio.timeout(self.timeout):
                ok, _ = await self._acquire(keys=[key(k) for k, _, _ in counts], args=args)
        except Exception as exc:  # noqa: BLE001 - any Redis failure is an outage here
            self._failed(exc)
            return None
        return bool(int(ok))

    async def set(self, counted: str, n: int) -> None:
        """This node's count of ``counted`` is now ``n`` (a connection closed, or said hello)."""
        if self.clock() < self._down_until:
            return
        try:
            async with asyncio.timeout(self.timeout):
                await self._set(keys=[key(counted)], args=[*self._view(), self._value(n)])
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)

    def tell(self, counted: str, n: int) -> None:
        """``set`` in the background: a close never waits on Redis (``settled`` waits for what was told)."""
        task = asyncio.get_running_loop().create_task(self.set(counted, n))
        self._told.add(task)
        task.add_done_callback(self._told.discard)

    async def settled(self) -> None:
        if self._told:
            await asyncio.gather(*self._told, return_exceptions=True)

    async def heartbeat(self, ttl_s: float = 3.0) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                view = await self._heartbeat(keys=[NODES], args=[self.node, int(ttl_s * 1000), KEEP_DEAD_MS])
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)
            return
        self.known = [x.decode() for x in view]

    def close(self) -> None:
        """The node is stopping: Redis is not asked again (a late call would open a connection nobody closes)."""
        self._down_until = math.inf

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self._down_until = self.clock() + 1.0
        log.warning("counts_redis_down", error=type(exc).__name__, policy="open" if self.fail_open else "closed")
