"""Admission: the one place that decides whether a new turn may start or gets ``busy`` at once.

A turn that would wait longer than ``max_wait`` for the engine (or would join a queue already ``max_queued``
long) is refused immediately with ``error{code: busy, retry_after}`` instead of leaving the player to find out.
The expected wait is the number of turns ahead of it, per engine place, times the recent average turn time.
Turns carry a priority (the engine starts waiting turns highest first): only turns of the same or a higher
priority are ahead of a new one, so both bounds count just those, and overload sheds low-priority turns (a
game's background chatter) before the player's. Pure bookkeeping, no clock of its own: callers report how long
each turn took.

Memory pressure sheds by priority too (``pressure``: the process's memory over its limit, sampled elsewhere):
from 0.9 of the limit background turns (priority < 0) are refused, from 1.0 everything below the player's line
(priority < 1) and new sessions, from 1.2 every new turn. Running turns always finish.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

from .errors import Busy

#: (memory pressure from, turns of a priority below this are refused); checked from the highest pressure down
SHED = ((1.2, 11), (1.0, 1), (0.9, 0))


def no_pressure() -> float:
    return 0.0


class Admission:
    def __init__(
        self,
        capacity: int,
        max_queued: int,
        max_wait: float,
        *,
        smoothing: float = 0.2,
        pressure: Callable[[], float] = no_pressure,
    ) -> None:
        self.pressure = pressure
        self.capacity = capacity  # turns the engine runs at once
        self.max_queued = max_queued
        self.max_wait = max_wait
        self.smoothing = smoothing
        self.running = 0  # admitted and not yet ended (running or waiting for the engine)
        self.by_priority: Counter[int] = Counter()  # the same, per priority
        self.turn_seconds = 0.0  # moving average of recent turn durations

    def ahead(self, priority: int = 0) -> int:
        """Admitted turns a new turn of this priority would not overtake."""
        return sum(n for p, n in self.by_priority.items() if p >= priority)

    def expected_wait(self, priority: int = 0) -> float:
        """Seconds a turn of this priority admitted now would wait for an engine place."""
        ahead = self.ahead(priority) - self.capacity + 1
        if ahead <= 0:
            return 0.0
        return math.ceil(ahead / self.capacity) * self.turn_seconds

    def shed(self, priority: int) -> None:
        """Refuse at once under memory pressure, lowest priorities first."""
        p = self.pressure()
        for level, below in SHED:
            if p >= level:
                if priority < below:
                    raise Busy(
                        f"the server is short of memory ({p:.0%} of its limit); retry in a few seconds",
                        retry_after=5.0,
                    )
                return

    def admit_session(self) -> None:
        """A new session: refused while turns of the default priority would be (queue full, or memory)."""
        self.shed(0)
        if max(0, self.ahead(0) - self.capacity + 1) > self.max_queued:
            raise Busy(f"the server is at capacity ({self.running} turns); retry in a few seconds", retry_after=2.0)

    def admit(self, priority: int = 0) -> None:
        self.shed(priority)
        queued = max(0, self.ahead(priority) - self.capacity + 1)
        wait = self.expected_wait(priority)
        if queued > self.max_queued or wait > self.max_wait:
            retry = max(wait, self.turn_seconds, 1.0)
            raise Busy(
                f"the server is at capacity ({self.running} turns for {self.capacity} places); "
                f"retry in about {retry:.0f} s",
                retry_after=round(retry, 1),
            )
        self.running += 1
        self.by_priority[priority] += 1

    def release(self, priority: int = 0) -> None:
        """An admitted turn that never reached the engine: its place is free, and it says nothing of turn times."""
        self.running -= 1
        self.by_priority[priority] -= 1
        if not self.by_priority[priority]:
            del self.by_priority[priority]

    def done(self, seconds: float, priority: int = 0) -> None:
        self.release(priority)
        if self.turn_seconds == 0.0:
            self.turn_seconds = seconds
        else:
            self.turn_seconds += self.smoothing * (seconds - self.turn_seconds)
