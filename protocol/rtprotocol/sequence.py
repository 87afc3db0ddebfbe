"""Sequence numbers and resume, both sides, without I/O.

Server side, ``FrameLog`` numbers a session's frames and keeps the most recent ones; ``resume`` answers a
client's ``(epoch, last_seq)`` all or nothing, as Centrifugo does: either every frame after ``last_seq`` is still
held and the client gets exactly those, or it gets none and a snapshot instead.

Client side, ``SeqTracker`` drops frames it has already seen (after a resume overlaps live frames) and detects a
gap (a frame lost on a live connection), which means: resume now.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from typing import Generic, Literal, TypeVar

T = TypeVar("T")
NotRecovered = Literal["epoch_changed", "gap_too_old", "ahead"]


@dataclass
class Resume(Generic[T]):
    recovered: bool
    items: list[T] = field(default_factory=list)
    why: NotRecovered | None = None


class FrameLog(Generic[T]):
    """A bounded log of one session's frames, numbered 1, 2, 3, … with no gaps. ``append`` numbers the item and
    keeps it; the seq of each kept item follows from its position, so the log holds the items alone (for the
    server, bytes: no per-entry objects for the garbage collector to walk)."""

    def __init__(self, epoch: str, capacity: int, last_seq: int = 0) -> None:
        self.epoch = epoch
        self.last_seq = last_seq
        self._items: deque[T] = deque(maxlen=capacity)

    def append(self, item: T) -> int:
        """Keep ``item`` as the next frame; return its seq."""
        self.last_seq += 1
        self._items.append(item)
        return self.last_seq

    def age_out(self) -> None:
        """Drop every kept frame (``welcome.limits.frame_log_ttl_s`` passed since the last one), keeping the epoch
        and seq: a resume that needs a dropped frame gets ``gap_too_old``; one that needs none still recovers."""
        self._items.clear()

    @property
    def first_seq(self) -> int:
        """The oldest seq still held (``last_seq + 1`` when empty)."""
        return self.last_seq - len(self._items) + 1

    def resume(self, epoch: str, last_seq: int) -> Resume[T]:
        if epoch != self.epoch:
            return Resume(False, why="epoch_changed")
        if last_seq > self.last_seq:
            return Resume(False, why="ahead")
        if last_seq + 1 < self.first_seq:
            return Resume(False, why="gap_too_old")
        return Resume(True, list(islice(self._items, last_seq + 1 - self.first_seq, None)))


class GapError(Exception):
    """A frame arrived with a seq beyond the next expected one: frames were lost; resume from ``last_seq``."""

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"expected seq {expected}, got {got}")
        self.expected, self.got = expected, got


class SeqTracker:
    """What a client has seen of one session: its epoch and the last seq delivered to the application."""

    def __init__(self) -> None:
        self.epoch: str | None = None
        self.last_seq = 0

    def reset(self, epoch: str, seq: int) -> None:
        """A ``session`` frame that was not a recovery: start over at its epoch and seq."""
        self.epoch, self.last_seq = epoch, seq

    def accept(self, seq: int) -> bool:
        """True if the frame is new and next in line; False if already seen; ``GapError`` if frames are missing."""
        if seq <= self.last_seq:
            return False
        if seq != self.last_seq + 1:
            raise GapError(self.last_seq + 1, seq)
        self.last_seq = seq
        return True
