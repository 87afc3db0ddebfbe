"""A scripted engine for protocol, transport and load tests: deterministic words, paced by the clock or by hand.

The reply to a user line is ``"You said: <text>."`` followed by ``words`` pseudo-random words drawn from
the seed and the prompt, emitted one token at a time at ``rate`` tokens/s (0: as fast as possible). With
``stamp``, each token is instead the engine's ``time.monotonic()`` when it produced it, so a benchmark client on
the same machine can measure delivery latency from engine to client. Like the llama.cpp engine it runs at most
``capacity`` turns at once; the rest wait, highest priority first.

``SteppedEngine`` is the same engine with the clock taken out, for tests: a turn produces a token only when the
test steps it, and the engine records the order in which turns waited, started and ended, so a test asserts
order ("the high-priority turn started first") and makes "still running" true by not stepping, never by timing.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

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

    @property
    def full(self) -> bool:
        """An ``acquire`` now would wait."""
        return not self.free or self.waiting > 0

    async def acquire(self, priority: int) -> None:
        if not self.full:
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


Pace = Callable[[int], Awaitable[None]]  # awaited before each token with the count produced so far


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
            async for event in self._generate(request, (time.monotonic() - submitted) * 1000, self._clock()):
                yield event
        finally:
            self._places.release()

    def _clock(self) -> Pace | None:
        """Paced against the clock so that tokens come at the rate however slow the consumer is (None: unpaced)."""
        if self.rate <= 0:
            return None
        started = time.monotonic()

        async def pace(produced: int) -> None:
            await asyncio.sleep(max(0.0, started + (produced + 1) / self.rate - time.monotonic()))

        return pace

    async def _generate(self, request: Request, queue_ms: float, pace: Pace | None) -> AsyncIterator[Event]:
        self.turns += 1
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
            if pace is not None:
                await pace(produced)
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


@dataclass(eq=False)
class SteppedTurn:
    """One turn as the stepped engine saw it."""

    key: str  # the session id
    user: str  # the user line it answers
    priority: int
    state: Literal["waiting", "running", "ended"] = "waiting"
    allowed: float = 0  # tokens the test has let it produce so far (math.inf: all of them)
    reason: FinishReason | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class SteppedEngine(ScriptedEngine):
    """The scripted engine stepped by the test instead of the clock.

    ``step(n)`` lets every running turn (or the one of session ``key``) produce ``n`` more tokens; a turn not
    stepped stays running for as long as the test likes. ``events`` records ``("wait" | "start" | "end", user
    line)`` in the order they happened, and ``until(condition)`` returns once the engine's state satisfies it
    (checked at every change, no polling): ``until_waiting(2)`` once two turns are queued for a place,
    ``until_started(3)`` once a third turn has started.
    With ``free`` set, turns run without waiting for steps (a test's warm-up, a server's shutdown).
    """

    def __init__(self, words: int = 12, capacity: int = 8) -> None:
        super().__init__(rate=0.0, words=words, capacity=capacity)
        self.free = False
        self.events: list[tuple[str, str]] = []
        self.seen: list[SteppedTurn] = []  # every turn, in arrival order
        self._watchers: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    @property
    def waiting(self) -> list[SteppedTurn]:
        return [t for t in self.seen if t.state == "waiting"]

    @property
    def running(self) -> list[SteppedTurn]:
        return [t for t in self.seen if t.state == "running"]

    def step(self, n: float = 1, *, key: str | None = None) -> None:
        turns = [t for t in self.running if key is None or t.key == key]
        if not turns:  # a test that steps before its turn runs would otherwise hang on a token that never comes
            raise AssertionError(f"no running turn to step (key={key}); await engine.until_started(n) first")
        for t in turns:
            t.allowed += n
            t.wake.set()

    def finish(self, *, key: str | None = None) -> None:
        """Let the running turns (or the one of session ``key``) produce all their tokens."""
        self.step(math.inf, key=key)

    def run_freely(self) -> None:
        """From now on (until ``free`` is cleared) every turn, running or to come, produces without steps."""
        self.free = True
        for t in self.running:
            t.wake.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        if condition():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watchers.append((condition, fut))
        await fut

    async def until_waiting(self, n: int) -> None:
        await self.until(lambda: len(self.waiting) == n)

    async def until_running(self, n: int = 1) -> None:
        await self.until(lambda: len(self.running) == n)

    async def until_started(self, n: int) -> None:
        """Until ``n`` turns have started, counting those that have ended since."""
        await self.until(lambda: sum(what == "start" for what, _ in self.events) >= n)

    def _note(self, turn: SteppedTurn, what: str) -> None:
        self.events.append((what, turn.user))
        for condition, fut in self._watchers:
            if not fut.done() and condition():
                fut.set_result(None)
        self._watchers = [(c, f) for c, f in self._watchers if not f.done()]

    async def generate(self, request: Request) -> AsyncIterator[Event]:
        user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        turn = SteppedTurn(request.key, user, request.priority)
        self.seen.append(turn)
        submitted = time.monotonic()
        if self._places.full:
            self._note(turn, "wait")
        await self._places.acquire(request.priority)
        loop = asyncio.get_running_loop()

        def cancelled() -> None:  # a cancel ends the wait for a step, from whichever thread sets it
            loop.call_soon_threadsafe(turn.wake.set)

        request.cancel.on_set(cancelled)
        turn.state = "running"
        self._note(turn, "start")
        try:
            queue_ms = (time.monotonic() - submitted) * 1000
            async for event in self._generate(request, queue_ms, partial(self._gate, turn, request)):
                if isinstance(event, Finish):
                    turn.reason = event.reason
                yield event
        finally:
            turn.state = "ended"
            self._note(turn, "end")
            self._places.release()

    async def _gate(self, turn: SteppedTurn, request: Request, produced: int) -> None:
        while produced >= turn.allowed and not self.free and not request.cancel.is_set():
            turn.wake.clear()
            await turn.wake.wait()
