"""GCRA in Redis: one atomic Lua script per decision, so N nodes enforce one limit, not N.

The script decides every key of a request at once (a frame's user and IP), all or nothing, from the time it
is given (an injected clock: tests) or Redis's own ``TIME`` (production: one clock for the whole fleet). Keys
expire when their TAT passes. If Redis does not answer within ``redis_timeout`` the policy decides: fail open
(the node's own in-process limits, the default, as Envoy's global limiter does) or fail closed (refused,
``retry_after`` 1 s). After a failure Redis is left alone for a second, so an outage costs one timeout a second,
not one per frame: nothing hangs.

On Redis Cluster a request's keys live in different slots, so each is decided by its own script, all at once;
if one refuses, what the others took is given back (never more admitted than the limit; under contention a
request may be refused that a single script would have let through).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from .gcra import ALLOWED, Decision, Gcra, Limit

log = structlog.get_logger("rtserver.limits")

PREFIX = "rt:limit:"
# KEYS: one per limit. ARGV[1]: now in µs ("" = Redis TIME); then per key: interval µs, burst µs, cost.
TAKE = """
local now = tonumber(ARGV[1])
if not now then local t = redis.call('TIME'); now = tonumber(t[1]) * 1000000 + tonumber(t[2]) end
local new, worst = {}, 0
for i = 1, #KEYS do
  local interval, burst, cost = tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  tat = tat + cost * interval
  if tat - burst - now > worst then worst = tat - burst - now end
  new[i] = tat
end
if worst > 0 then return {0, string.format('%.0f', worst)} end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%.0f', new[i]), 'PX', math.floor((new[i] - now) / 1000) + 1)
end
return {1, '0'}
"""
# KEYS[1]: the limit; ARGV: now µs ("" = TIME), interval µs, cost. The TAT moves back, never before now.
REFUND = """
local now = tonumber(ARGV[1])
if not now then local t = redis.call('TIME'); now = tonumber(t[1]) * 1000000 + tonumber(t[2]) end
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat then return 0 end
tat = tat - tonumber(ARGV[3]) * tonumber(ARGV[2])
if tat <= now then redis.call('DEL', KEYS[1]) return 1 end
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1)
return 1
"""


class SharedLimiter:
    def __init__(
        self,
        redis: Any,
        local: Gcra,
        *,
        timeout: float,
        fail_open: bool = True,
        clock: Callable[[], float] | None = None,
        wall: Callable[[], float] = time.monotonic,
        cluster: bool = False,
    ) -> None:
        self.redis, self.local, self.timeout, self.fail_open = redis, local, timeout, fail_open
        self.cluster = cluster
        self.clock = clock  # None: Redis's TIME
        self.wall = wall  # for the back-off after a failure only
        self._take = redis.register_script(TAKE)
        self._refund = redis.register_script(REFUND)
        self._down_until = 0.0
        self.failures = 0

    def _now(self) -> str:
        return "" if self.clock is None else str(int(self.clock() * 1e6))

    async def take(self, limits: Sequence[Limit]) -> Decision:
        if not limits:
            return ALLOWED
        if self.wall() < self._down_until:
            return self._fallback(limits)
        now = self._now()
        try:
            async with asyncio.timeout(self.timeout):
                if self.cluster and len(limits) > 1:
                    return await self._take_each(limits, now)
                allowed, wait = await self._take(keys=[PREFIX + lim.key for lim in limits], args=_args(now, limits))
        except Exception as exc:  # noqa: BLE001 - any Redis failure (refused, timeout, script) is an outage here
            self._failed(exc)
            return self._fallback(limits)
        return ALLOWED if int(allowed) else Decision(False, round(int(wait) / 1e6, 3))

    async def _take_each(self, limits: Sequence[Limit], now: str) -> Decision:
        taken = await asyncio.gather(*(self._take(keys=[PREFIX + lim.key], args=_args(now, [lim])) for lim in limits))
        if all(int(ok) for ok, _ in taken):
            return ALLOWED
        await asyncio.gather(
            *(self._give_back(lim, now) for lim, (ok, _) in zip(limits, taken, strict=True) if int(ok))
        )
        return Decision(False, round(max(int(wait) for _, wait in taken) / 1e6, 3))

    async def refund(self, lim: Limit) -> None:
        if self.wall() < self._down_until:
            self.local.refund(lim)
            return
        try:
            async with asyncio.timeout(self.timeout):
                await self._give_back(lim, self._now())
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)
            self.local.refund(lim)

    async def _give_back(self, lim: Limit, now: str) -> None:
        await self._refund(keys=[PREFIX + lim.key], args=[now, int(lim.interval * 1e6), lim.cost])

    def close(self) -> None:
        """The node is stopping: decided in process from now on (a late call would open a connection nobody
        closes)."""
        self._down_until = math.inf

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self._down_until = self.wall() + 1.0
        log.warning("limits_redis_down", error=type(exc).__name__, policy="open" if self.fail_open else "closed")

    def _fallback(self, limits: Sequence[Limit]) -> Decision:
        return self.local.take(limits) if self.fail_open else Decision(False, 1.0)


def _args(now: str, limits: Sequence[Limit]) -> list[Any]:
    args: list[Any] = [now]
    for lim in limits:
        args += [int(lim.interval * 1e6), int(lim.burst * 1e6), lim.cost]
    return args
