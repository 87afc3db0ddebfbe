"""The budget for malformed frames on one connection, sans-I/O: a token bucket with the time passed in.

A connection may send ``burst`` malformed frames at once and then ``per_s`` a second for ever; one faster than
that is closed with 1008 (PROTOCOL.md §1, ``welcome.limits.bad_frames_burst``/``bad_frames_per_s``). Only
frames that could not be read as v1 count: ``unknown_type`` never does, so a client that sends a frame type a
newer server knows is never cut off by an older one (§7); refusals of well-formed frames (``busy``,
``turn_running``, ...) are not malformed and do not count either.
"""

from __future__ import annotations

from typing import Final

from .frames import BAD_FRAMES_BURST, BAD_FRAMES_PER_S

#: The error codes that spend the budget: the frame could not be decoded, or a field was wrong.
COUNTED_CODES: Final = frozenset({"bad_frame", "bad_field"})


class BadFrameBudget:
    """``spend(now)`` for each malformed frame; False means the connection is over budget: close it (1008).

    ``now`` is any monotonic clock in seconds (the caller's loop time); the budget keeps no clock of its own.
    """

    def __init__(self, burst: int = BAD_FRAMES_BURST, per_s: float = BAD_FRAMES_PER_S) -> None:
        if burst < 1 or per_s < 0:
            raise ValueError("burst must be at least 1 and per_s at least 0")
        self.burst, self.per_s = burst, per_s
        self._tokens = float(burst)
        self._at: float | None = None  # when the tokens were last counted

    @staticmethod
    def counts(code: str) -> bool:
        """Whether an error of this code spends the budget (``unknown_type`` never does)."""
        return code in COUNTED_CODES

    def spend(self, now: float) -> bool:
        """Count one malformed frame at time ``now``; True while within the budget."""
        if self._at is not None and now > self._at:
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.per_s)
        self._at = now if self._at is None else max(self._at, now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def left(self, now: float) -> float:
        """The malformed frames that may still come at ``now`` without closing (fractions of one included)."""
        if self._at is None or now <= self._at:
            return self._tokens
        return min(float(self.burst), self._tokens + (now - self._at) * self.per_s)
