"""A scripted engine for protocol, transport and load tests: deterministic words at a fixed rate.

The reply to a user line is ``"You said: <text>."`` followed by ``words`` pseudo-random words drawn from
the seed and the prompt, emitted one token at a time at ``rate`` tokens/s (0: as fast as possible). With
``stamp``, each token is instead the engine's ``time.monotonic()`` when it produced it, so a benchmark client on
the same machine can measure delivery latency from engine to client.
"""

from __future__ import annotations

import asyncio
import hashlib
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


class ScriptedEngine:
    name = "scripted"

    def __init__(self, rate: float = 20.0, words: int = 12, stamp: bool = False, capacity: int = 8) -> None:
        self.rate, self.words, self.stamp = rate, words, stamp
        self.capacity = capacity  # turns it runs at once, like a real engine's places; the rest wait
        self._places = asyncio.Semaphore(capacity)
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
        }

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
        async with self._places:
            async for event in self._generate(request, (time.monotonic() - submitted) * 1000):
                yield event

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
