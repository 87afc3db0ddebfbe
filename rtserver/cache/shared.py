"""The Redis tier: replies shared by every node, and one generation per key across nodes (coalescing).

Keys, all with the reply key as their hash tag so that one key's three live in one Redis Cluster slot (and one
script may touch them all):
    rt:cache:{K}        the reply (msgpack), expiring after the cache TTL
    rt:cache:{K}:lock   held by the node generating K (SET NX PX), so the others wait instead of generating too
    rt:cache:{K}:done   a short stream the leader appends the reply to (or '' when it failed), and beats while
                        it generates (a long reply renews the lock and keeps its waiters waiting)
``claim`` is one script: the reply if there is one, else the lock if it is free, else "wait" and the done
stream's last id. A waiter reads the stream from that id with ``XREAD BLOCK``: an entry the leader adds after
the claim, even before the waiter blocks, is never missed (as a SUBSCRIBE after a GET could miss it).

Redis trouble never fails or blocks a turn: every call is bounded by ``timeout`` (a wait by the wait bound),
and after a failure Redis is left alone for ``RETRY_S`` (the cache is then in-process only).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, TypeVar

import structlog

from .key import Reply

log = structlog.get_logger("rtserver.cache")

RETRY_S = 5.0  # after a failed call, Redis is tried again this much later (turns do not each pay the timeout)
T = TypeVar("T")

_CLAIM = """
local v = redis.call('GET', KEYS[1])
if v then return {1, v} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2, ''} end
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
if last[1] then return {3, last[1][1]} end
return {3, '0-0'}
"""
_BEAT = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', '8', '*', 'p', '')
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return 1
"""
_PUBLISH = """
if ARGV[1] ~= '' then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', '8', '*', 'r', ARGV[1])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
if redis.call('GET', KEYS[2]) == ARGV[4] then redis.call('DEL', KEYS[2]) end
return 1
"""


@dataclass(frozen=True)
class Claim:
    """What Redis said about a key: ``hit`` (``reply`` set), ``lead`` (this node generates; ``token`` is its lock),
    ``wait`` (another node generates; wait after stream id ``after``), or ``off`` (Redis is not usable now)."""

    kind: Literal["hit", "lead", "wait", "off"]
    reply: Reply | None = None
    token: str = ""
    after: str = "0-0"


OFF = Claim("off")


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))  # Redis refuses an expiry of 0 ms; a block of 0 ms would block for ever


def _keys(key: str) -> list[str]:
    base = f"rt:cache:{{{key}}}"
    return [base, base + ":lock", base + ":done"]


class SharedCache:
    """``client`` answers quick calls (its socket timeout short); ``blocking`` carries the bounded waits."""

    def __init__(
        self,
        client: Any,
        blocking: Any,
        *,
        timeout: float,
        ttl: float,
        wait: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._r, self._blocking = client, blocking
        self.timeout, self.ttl, self.wait_s, self._clock = timeout, ttl, wait, clock
        self._claim = client.register_script(_CLAIM)
        self._publish = client.register_script(_PUBLISH)
        self._beat = client.register_script(_BEAT)
        self._down_until = 0.0
        self.errors = 0
        self.degraded = False

    @classmethod
    def connect(cls, url: str, *, timeout: float, ttl: float, wait: float, cluster: bool = False) -> SharedCache:
        from ..fleet.clients import client

        # No retries of their own: the tier gives up after one bounded try and runs without Redis for a while.
        return cls(client(url, timeout, cluster), client(url, None, cluster), timeout=timeout, ttl=ttl, wait=wait)

    async def close(self) -> None:
        for r in (self._r, self._blocking):
            await r.aclose()

    async def _call(self, make: Callable[[], Awaitable[T]], bound: float) -> T | None:
        """One Redis call within ``bound`` seconds; None (and Redis left alone for a while) if it failed."""
        if self._clock() < self._down_until:
            return None
        try:
            async with asyncio.timeout(bound):
                result = await make()
        except Exception as exc:  # redis errors, OSError, TimeoutError: the cache goes on without Redis
            self.errors += 1
            self._down_until = self._clock() + RETRY_S
            if not self.degraded:
                log.warning("cache_redis_down", error=f"{type(exc).__name__}: {exc}"[:200], retry_s=RETRY_S)
            self.degraded = True
            return None
        if self.degraded:
            log.info("cache_redis_up")
            self.degraded = False
        return result

    async def claim(self, key: str) -> Claim:
        token = secrets.token_hex(8)
        ms = str(_ms(self.wait_s))
        got = await self._call(lambda: self._claim(keys=_keys(key), args=[token, ms]), self.timeout)
        if got is None:
            return OFF
        code, value = int(got[0]), got[1]
        if code == 1:
            reply = Reply.decode(value)
            return Claim("hit", reply=reply) if reply is not None else Claim("lead", token=token)
        if code == 2:
            return Claim("lead", token=token)
        return Claim("wait", after=value.decode() if isinstance(value, bytes) else str(value))

    async def publish(self, key: str, claim: Claim, reply: Reply | None) -> None:
        """Store the leader's reply (None: it failed, waiters go ahead on their own) and free its lock."""
        payload = reply.encode() if reply is not None else b""
        args = [payload, str(_ms(self.ttl)), str(_ms(2 * self.wait_s)), claim.token]
        await self._call(lambda: self._publish(keys=_keys(key), args=args), self.timeout)

    async def beat(self, key: str, claim: Claim) -> None:
        """The leader is still generating: its lock is renewed and waiters wait ``wait`` seconds more."""
        args = [claim.token, str(_ms(self.wait_s)), str(_ms(2 * self.wait_s))]
        await self._call(lambda: self._beat(keys=_keys(key), args=args), self.timeout)

    async def store(self, key: str, reply: Reply) -> None:
        """A reply generated without the lock (Redis was off at the claim, or the wait ran out)."""
        await self._call(lambda: self._r.set(_keys(key)[0], reply.encode(), px=_ms(self.ttl)), self.timeout)

    async def wait(self, key: str, claim: Claim) -> Reply | None:
        """The leader's reply once it is published; None if it failed, or when it went ``wait`` seconds without a
        beat (a long reply keeps its waiters with a beat every third of that)."""
        done, after = _keys(key)[2], claim.after
        block = _ms(self.wait_s)
        while True:
            got = await self._call(
                partial(self._blocking.xread, {done: after}, count=16, block=block), self.wait_s + self.timeout
            )
            if not got:
                return None
            for entry_id, fields in got[0][1]:
                if b"r" in fields:
                    raw = fields[b"r"]
                    return Reply.decode(raw) if raw else None
                after = entry_id  # a beat: the leader is still at it

    async def ping(self) -> bool:
        return bool(await self._call(self._r.ping, self.timeout))
