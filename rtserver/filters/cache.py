"""Turn filter: the reply cache. A turn the cache may answer (``cache.cacheable``) is looked up by its exact key
(``cache.turn_key``) in process, then in Redis; a hit streams its deltas like a live reply (paced at ``pace``
deltas/s, or as fast as the client reads with 0) and ends with ``Finish`` of no tokens computed; ``ctx.cache``
becomes ``hit`` for ``turn.end.cache``.

Identical turns at the same moment cause one generation: in process the first is the flight's leader and the
others await its reply; across nodes the leader holds the key's Redis lock and the others wait for the reply it
publishes (``cache/shared.py``). A follower whose leader failed or ran past the wait bound generates itself.
Only complete replies (``stop``, ``length``) are kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge

from ..cache import Claim, LocalCache, Reply, SharedCache, cacheable, turn_key
from ..engine.base import Event, Finish, Token
from .base import Handler, TurnContext

_LOCAL_ONLY = Claim("off")
T = TypeVar("T")


class _Cancelled(Exception):
    """The turn was cancelled while it waited for an identical one: it ends ``cancelled`` at once."""


async def _or_cancel(ctx: TurnContext, aw: Awaitable[T]) -> T:
    """``aw``'s result, unless the turn's cancel flag is set first (then ``aw`` is cancelled and _Cancelled raised):
    a turn waiting for another's reply stops as promptly as one in the engine."""
    loop = asyncio.get_running_loop()
    task, stop = asyncio.ensure_future(aw), loop.create_future()

    def wake() -> None:
        if not stop.done():
            stop.set_result(None)

    def on_cancel() -> None:  # may run on the engine's thread
        if not loop.is_closed():
            loop.call_soon_threadsafe(wake)

    ctx.request.cancel.on_set(on_cancel)
    if ctx.request.cancel.is_set():
        wake()
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the turn's task itself was cancelled: so is what it waited for
        task.cancel()
        raise
    if task.done():
        stop.cancel()
        return task.result()
    task.cancel()
    raise _Cancelled


class CacheMetrics:
    def __init__(self, registry: CollectorRegistry, shared: SharedCache | None) -> None:
        r = registry
        self.hits = Counter("rtserver_cache_hits", "turns answered without a generation (coalesced too)", registry=r)
        self.misses = Counter("rtserver_cache_misses", "cacheable turns not found, generated", registry=r)
        self.coalesced = Counter(
            "rtserver_cache_coalesced", "turns answered by an identical turn's generation in flight", registry=r
        )
        self.generations = Counter("rtserver_generations", "turns that ran the engine (any turn)", registry=r)
        if shared is not None:
            Gauge("rtserver_cache_redis_degraded", "1 while the cache runs without Redis", registry=r).set_function(
                lambda: int(shared.degraded)
            )
            Gauge("rtserver_cache_redis_errors", "failed Redis calls of the cache", registry=r).set_function(
                lambda: shared.errors
            )


class CacheFilter:
    def __init__(
        self,
        model_ids: dict[str, str],
        local: LocalCache,
        shared: SharedCache | None,
        metrics: CacheMetrics,
        pace: float = 0.0,
    ) -> None:
        self.model_ids, self.local, self.shared, self.m, self.pace = model_ids, local, shared, metrics, pace
        self._flights: dict[str, asyncio.Future[Reply | None]] = {}  # key -> the reply of the turn generating it

    async def close(self) -> None:
        if self.shared is not None:
            await self.shared.close()

    def _key(self, ctx: TurnContext) -> str | None:
        if self.local.entries <= 0 or not cacheable(ctx.kind, ctx.request, ctx.cache_opt):
            return None
        return turn_key(self.model_ids.get(ctx.model, ctx.model), ctx.request)

    async def __call__(self, ctx: TurnContext, inner: Handler) -> AsyncIterator[Event]:
        key = self._key(ctx)
        try:
            if key is not None:
                reply = await self._follow(ctx, key)
                if reply is None and key not in self._flights:
                    async for event in self._lead(ctx, key, inner):
                        yield event
                    return
                if reply is not None:
                    async for event in self._replay(ctx, reply):
                        yield event
                    return
        except _Cancelled:
            yield Finish("cancelled")
            return
        self.m.generations.inc()
        async for event in inner(ctx):
            yield event

    async def _follow(self, ctx: TurnContext, key: str) -> Reply | None:
        """The reply from this node's cache, or from the identical turn in flight here; None: go and get it."""
        for _ in range(2):  # a failed flight is tried once more (one of its followers leads the next)
            reply = self.local.get(key)
            if reply is not None:
                return reply
            flight = self._flights.get(key)
            if flight is None:
                return None
            reply = await _or_cancel(ctx, asyncio.shield(flight))  # shielded: a follower's cancel is its own
            if reply is not None:
                self.m.coalesced.inc()
                return reply
        return None

    async def _lead(self, ctx: TurnContext, key: str, inner: Handler) -> AsyncIterator[Event]:
        """This node's one turn for ``key``: from Redis, from another node's generation, or generated here."""
        flight: asyncio.Future[Reply | None] = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        reply: Reply | None = None
        try:
            claim = await self.shared.claim(key) if self.shared is not None else _LOCAL_ONLY
            if claim.kind == "hit":
                reply = claim.reply
            elif claim.kind == "wait":
                assert self.shared is not None
                reply = await _or_cancel(ctx, self.shared.wait(key, claim))
                if reply is not None:
                    self.m.coalesced.inc()
            if reply is None:
                async for event in self._generate(ctx, key, claim, inner):
                    if isinstance(event, Reply):
                        reply = event
                    else:
                        yield event
                return
            self.local.put(key, reply)
        finally:
            del self._flights[key]
            flight.set_result(reply)
        async for event in self._replay(ctx, reply):
            yield event

    async def _generate(self, ctx: TurnContext, key: str, claim: Claim, inner: Handler) -> AsyncIterator[Event | Reply]:
        """The live turn, streamed as it comes; its Reply (when complete) is yielded before its Finish."""
        self.m.misses.inc()
        self.m.generations.inc()
        deltas: list[str] = []
        finish: Finish | None = None
        events = inner(ctx)
        beats = asyncio.create_task(self._beats(key, claim)) if claim.kind == "lead" else None
        try:
            async for event in events:
                if isinstance(event, Token):
                    deltas.append(event.text)
                    yield event
                else:
                    finish = event
        finally:
            if beats is not None:
                beats.cancel()
            close = getattr(events, "aclose", None)  # closed now if this turn is, so the engine's place frees
            if close is not None:
                await close()
            reply = Reply(tuple(deltas), finish.reason) if finish and finish.reason in ("stop", "length") else None
            if reply is not None:
                self.local.put(key, reply)
            if self.shared is not None:
                if claim.kind == "lead":
                    await self.shared.publish(key, claim, reply)
                elif reply is not None:
                    await self.shared.store(key, reply)
        if reply is not None:
            yield reply
        if finish is not None:
            yield finish

    async def _beats(self, key: str, claim: Claim) -> None:
        """While this node generates ``key``, tell the other nodes' waiters it is still coming (a queue wait or a
        long reply may outlast ``cache_wait``), off the token path."""
        assert self.shared is not None
        while True:
            await asyncio.sleep(self.shared.wait_s / 3)  # a period, not a synchronisation
            await self.shared.beat(key, claim)

    async def _replay(self, ctx: TurnContext, reply: Reply) -> AsyncIterator[Event]:
        """A cached reply streamed like a live one; a cancel stops it between two deltas."""
        ctx.cache = "hit"
        self.m.hits.inc()
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, text in enumerate(reply.deltas):
            if ctx.request.cancel.is_set():
                yield Finish("cancelled")
                return
            if self.pace > 0:
                await asyncio.sleep(max(0.0, start + i / self.pace - loop.time()))
            yield Token(text)
        yield Finish(reply.reason)
