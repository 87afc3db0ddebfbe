"""The process's resident memory against ``max_memory_mb``, sampled a few times a second by the protection
watch, so admission reads a number instead of the kernel on every turn."""

from __future__ import annotations

import os


def rss_mb() -> float:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


class MemoryGauge:
    def __init__(self, limit_mb: float) -> None:
        self.limit_mb = limit_mb
        self.pressure = 0.0  # resident / limit; 0 with no limit

    def sample(self) -> None:
        if self.limit_mb > 0:
            self.pressure = rss_mb() / self.limit_mb

    def __call__(self) -> float:
        return self.pressure
