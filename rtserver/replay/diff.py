"""``rtserver replay diff A B``: what changed between two recordings of the same conversation, turn by turn (by
connection and order): the text, the finish reason, and latencies that moved beyond a threshold.

Exit codes (for CI): 0 nothing changed; 1 a text or finish reason changed (or turns are missing); 2 a recording
could not be read; 3 only timings moved beyond the threshold.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

from rtprotocol.recording import Recording

from .run import by_connection
from .turns import Turn

SAME, CHANGED, TIMINGS = 0, 1, 3


@dataclass(frozen=True)
class Change:
    conn: int
    turn: int
    what: str  # text | reason | missing | first_ms | total_ms
    a: object
    b: object

    def line(self) -> str:
        return f"conn {self.conn} turn {self.turn}: {self.what}: {self.a!r} -> {self.b!r}"


def diff(a: Recording, b: Recording, *, threshold_ms: float = 50.0, ratio: float = 2.0) -> list[Change]:
    """Changes from ``a`` to ``b``. A latency counts as changed when it moved by more than ``threshold_ms`` and by
    more than ``ratio`` times (either way), so that noise on a fast turn is not reported."""
    out: list[Change] = []
    ta, tb = by_connection(a.entries), by_connection(b.entries)
    for conn in sorted(set(ta) | set(tb)):
        xs, ys = ta.get(conn, []), tb.get(conn, [])
        for x, y in zip(xs, ys, strict=False):
            out += _turn(conn, x, y, threshold_ms, ratio)
        if len(xs) != len(ys):
            out.append(Change(conn, min(len(xs), len(ys)), "missing", len(xs), len(ys)))
    return out


def _turn(conn: int, x: Turn, y: Turn, threshold_ms: float, ratio: float) -> list[Change]:
    out = []
    if x.text != y.text:
        out.append(Change(conn, x.index, "text", x.text, y.text))
    if x.reason != y.reason:
        out.append(Change(conn, x.index, "reason", x.reason, y.reason))
    for name in ("first_ms", "total_ms"):
        p, q = getattr(x, name), getattr(y, name)
        if p is None or q is None:
            continue
        lo, hi = sorted((p, q))
        if hi - lo > threshold_ms and hi > ratio * max(lo, 1e-9):
            out.append(Change(conn, x.index, name, p, q))
    return out


def exit_code(changes: list[Change]) -> int:
    if any(c.what in ("text", "reason", "missing") for c in changes):
        return CHANGED
    return TIMINGS if changes else SAME


def print_diff(changes: list[Change], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    for c in changes:
        out.write(c.line() + "\n")
    out.write(f"{len(changes)} change(s)\n" if changes else "no changes\n")
