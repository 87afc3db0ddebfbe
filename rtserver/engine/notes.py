"""What the engine remembers of each session whose KV it holds, beside the KV itself: when its last turn ended and
its pace (the time from a turn's end to its next line, averaged), used to restore KV ahead of the next line, and
how many of its oldest turns its last prompt left out (where the next prompt's search starts)."""

from __future__ import annotations

import math
from collections.abc import Collection


class SessionNotes:
    def __init__(self) -> None:
        self.ended_at: dict[str, float] = {}
        self.pace: dict[str, float] = {}
        self.cuts: dict[str, int] = {}

    def line_came(self, key: str, at: float, slots: Collection[str], host: Collection[str]) -> None:
        """A session's line came at ``at``: fold the wait since its last turn's end into its pace. What is kept is
        bounded by the sessions whose KV the engine holds (``slots``: in the context, ``host``: in host memory)."""
        if (ended := self.ended_at.pop(key, None)) is not None:
            gap = at - ended
            before = self.pace.get(key)
            self.pace[key] = gap if before is None else (before + gap) / 2
        if max(len(self.pace), len(self.ended_at), len(self.cuts)) > 4 * (len(slots) + len(host)) + 64:
            held = set(slots) | set(host)  # forget the sessions whose KV the engine no longer holds
            self.pace = {k: v for k, v in self.pace.items() if k in held}
            self.ended_at = {k: v for k, v in self.ended_at.items() if k in held}
            self.cuts = {k: v for k, v in self.cuts.items() if k in held}

    def due(self, key: str, now: float) -> float:
        """When the session's next line is expected: its last turn's end plus its pace; never for a session with no
        pace yet, or one a whole pace overdue (its player may have gone)."""
        ended, pace = self.ended_at.get(key), self.pace.get(key)
        if ended is None or pace is None or now > ended + 2 * pace:
            return math.inf
        return ended + pace
