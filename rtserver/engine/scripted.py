"""A scripted engine for protocol, transport and load tests: deterministic words at a fixed rate.

The reply to a user line is ``"You said: <text>."`` followed by ``words`` pseudo-random words drawn from
the seed and the prompt, emitted one token at a time at ``rate`` tokens/s (0: as fast as possible). With
``stamp``, each token is instead the engine's ``time.monotonic()`` when it produced it, so a benchmark client on
the same machine can measure delivery latency from engine to client. Like the llama.cpp engine it runs at most
``capacity`` turns at once; the rest wait, highest priority first.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import random
import time
from collections.abc import AsyncIterator, Iterator

from .base import Event, Finish, FinishReason, Request, Token
from .prompt import StopMatcher

WORDS = (
    "the",
    "old",
    "road",
    "north",
    "lantern",
    "river",
    "guard",
    "quest",
    "gold",
    "story",
    "night",
    "fire",
    "village",
    "wolf",
    "sword",
    "friend",
    "bread",
    "stone",
    "tower",
    "song",
)


class Places:
    """At most ``capacity`` holders at once; waiters get in highest priority first, then in arrival order."""

    def __init__(self, capacity: int) -> None:
        self.free = capacity
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrival = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(not f.done() for _, _, f in self._waiters)

    async def acquire(self, priority: int) -> None:
        if self.free and not self.waiting:
            self.free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (-priority, next(self._arrival), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the place came as this waiter was cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)  # the place goes straight to the next waiter
                return
        self.free += 1


class ScriptedEngine:
    name = "scripted"

    def __init__(self, rate: float = 20.0, words: int = 12, stamp: bool = False, capacity: int = 8) -> None:
        self.rate, self.words, self.stamp = rate, words, stamp
        self.capacity = capacity  # turns it runs at once, like a real engine's places; the rest wait
        self._places = Places(capacity)
        self.generated_tokens = 0
        self.turns = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def stats(self) -> dict[str, int]:
        return {
            "generated_tokens": self.generated_tokens,
            "turns": self.turns,
            "prefilled_tokens": 0,
            "reused_tokens": 0,
            "waiting_turns": self._places.waiting,
        }

    def grammar_error(self, grammar: str) -> str | None:
        return None if "root" in grammar else "a grammar needs a rule named root"  # it does not constrain its words

    def _script(self, request: Request) -> Iterator[str]:
        user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        digest = hashlib.sha256(repr((request.seed, [m.content for m in request.messages])).encode()).digest()
        rng = random.Random(digest if request.seed is None else (request.seed, user).__repr__())
        if not request.continue_last:
            yield from ("You", " said:", f" {user}.")
        for _ in range(self.words):
            yield " " + rng.choice(WORDS)

    async def generate(self, request: Request) -> AsyncIterator[Event]:
        submitted = time.monotonic()
        await self._places.acquire(request.priority)
        try:
            async for event in self._generate(request, (time.monotonic() - submitted) * 1000):
                yield event
        finally:
            self._places.release()

    async def _generate(self, request: Request, queue_ms: float) -> AsyncIterator[Event]:
        self.turns += 1
        started = time.monotonic()
        stop = StopMatcher(request.stop)
        reason: FinishReason = "stop"
        produced = 0
        for piece in self._script(request):
            if request.cancel.is_set():
                reason = "cancelled"
                break
            if produced >= request.max_tokens:
                reason = "length"
                break
            if self.rate > 0:
                # Pace against the clock so that tokens come at the rate however slow the consumer is.
                due = started + (produced + 1) / self.rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if request.cancel.is_set():
                    reason = "cancelled"
                    break
            produced += 1
            self.generated_tokens += 1
            text, hit = stop.feed(f" {time.monotonic():.6f}" if self.stamp else piece)
            if text:
                yield Token(text)
            if hit:
                break
        else:
            if tail := stop.flush():
                yield Token(tail)
        yield Finish(
            reason,
            queue_ms=queue_ms,
            prompt_tokens=sum(len(m.content) for m in request.messages) // 4,
            completion_tokens=produced,
        )
