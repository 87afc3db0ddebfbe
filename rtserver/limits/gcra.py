"""GCRA (the generic cell rate algorithm) in process: one number per key, the theoretical arrival time (TAT).

A limit of ``per_min`` a minute lets a full minute's worth through at once (the burst), then one every
``60 / per_min`` seconds. A request of cost ``n`` moves the TAT on by ``n`` intervals; it is allowed when the new
TAT is at most a burst ahead of now. A refund (tokens reserved and not generated) moves it back, never before
now. Several keys are decided together, all or nothing: a frame counts against its user and its IP, or neither.
The clock is injected (tests step it; nothing here reads real time of its own).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    key: str
    per_min: float
    cost: float = 1.0

    @property
    def interval(self) -> float:
        return 60.0 / self.per_min

    @property
    def burst(self) -> float:
        """How far ahead of now the TAT may run: a minute's worth."""
        return 60.0


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0  # seconds until the same request would be allowed


ALLOWED = Decision(True)
EPSILON = 1e-9  # sums of intervals carry rounding: the last request of a burst must not fail by 1e-14 s


class Gcra:
    def __init__(self, clock: Callable[[], float] = time.monotonic, *, max_keys: int = 100_000) -> None:
        self.clock = clock
        self.tat: dict[str, float] = {}
        self.max_keys = max_keys

    def take(self, limits: Sequence[Limit]) -> Decision:
        now = self.clock()
        new: list[float] = []
        worst = 0.0
        for lim in limits:
            tat = max(self.tat.get(lim.key, now), now) + lim.cost * lim.interval
            worst = max(worst, tat - lim.burst - now)
            new.append(tat)
        if worst > EPSILON:
            return Decision(False, round(worst, 3))
        if len(self.tat) >= self.max_keys:
            self._forget(now)
        for lim, tat in zip(limits, new, strict=True):
            self.tat[lim.key] = tat
        return ALLOWED

    def refund(self, lim: Limit) -> None:
        tat = self.tat.get(lim.key)
        if tat is not None:
            self.tat[lim.key] = max(tat - lim.cost * lim.interval, self.clock())

    def _forget(self, now: float) -> None:
        """Keys whose TAT has passed hold no state worth keeping: the table stays bounded."""
        self.tat = {k: v for k, v in self.tat.items() if v > now}
