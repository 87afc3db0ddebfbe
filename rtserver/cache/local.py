"""The in-process tier: the most recently used replies, each for ``ttl`` seconds (the clock is injected)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from .key import Reply


class LocalCache:
    def __init__(self, entries: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.entries, self.ttl, self._clock = entries, ttl, clock
        self._items: OrderedDict[str, tuple[float, Reply]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> Reply | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= self._clock():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: str, reply: Reply) -> None:
        if self.entries <= 0:
            return
        self._items[key] = (self._clock() + self.ttl, reply)
        self._items.move_to_end(key)
        while len(self._items) > self.entries:
            self._items.popitem(last=False)
