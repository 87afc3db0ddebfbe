"""Reconnect delays: exponential backoff with full jitter (0.5 s doubling to a 20 s cap, as Centrifugo's SDKs).
The random source is injected so tests need no real time."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


@dataclass
class Backoff:
    base: float = 0.5
    cap: float = 20.0
    max_attempts: int | None = None  # None: keep trying
    rand: Callable[[float, float], float] = field(default=random.uniform)

    def delays(self) -> Iterator[float]:
        attempt = 0
        while self.max_attempts is None or attempt < self.max_attempts:
            yield self.rand(0.0, min(self.cap, self.base * 2**attempt))
            attempt += 1
