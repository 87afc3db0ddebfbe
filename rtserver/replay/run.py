"""``rtserver replay run``: play a recording's client side against a server (``copies`` at once make it a load
test), check that its deterministic turns give the same text, and report latencies beside the recording's.

Exit codes (for CI): 0 every deterministic turn gave the recorded text; 1 one or more differed; 2 the recording
could not be read; 3 a copy stalled or could not connect (the server answered differently, or not at all).
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rtprotocol.recording import Entry, Recording, entry_line, header_line

from .player import Player, Stalled
from .turns import Turn, comparable, percentile, turns

OK, DIFFERS, BAD_INPUT, FAILED = 0, 1, 2, 3


class Progress:
    """A progress bar on stderr for runs of many turns (only where stderr is a terminal, unless forced)."""

    def __init__(self, total: int, out: TextIO | None = None, *, show: bool | None = None) -> None:
        self.total, self.done, self.out = total, 0, out or sys.stderr
        self.show = self.out.isatty() if show is None else show
        self._drawn = -1

    def step(self) -> None:
        self.done += 1
        percent = self.done * 100 // max(1, self.total)
        if self.show and percent != self._drawn:
            self._drawn = percent
            bar = "#" * (percent // 4) + "." * (25 - percent // 4)
            self.out.write(f"\r[{bar}] {self.done}/{self.total} turns")
            self.out.flush()

    def close(self) -> None:
        if self.show and self._drawn >= 0:
            self.out.write("\n")


@dataclass
class Report:
    copies: int
    turns: int = 0
    compared: int = 0
    differ: list[dict[str, Any]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    first_recorded: list[float] = field(default_factory=list)
    first_replayed: list[float] = field(default_factory=list)
    per_turn: list[dict[str, Any]] = field(default_factory=list)  # copy 0: each turn beside the recording's

    @property
    def code(self) -> int:
        return FAILED if self.failed else DIFFERS if self.differ else OK

    def summary(self) -> dict[str, Any]:
        def pct(values: list[float]) -> dict[str, float | None]:
            return {"p50": percentile(values, 0.5), "p99": percentile(values, 0.99)}

        return {
            "copies": self.copies,
            "turns": self.turns,
            "seconds": round(self.seconds, 3),
            "turns_per_s": round(self.turns / self.seconds, 2) if self.seconds else None,
            "deterministic_compared": self.compared,
            "differ": len(self.differ),
            "failed": len(self.failed),
            "first_delta_ms": {"recorded": pct(self.first_recorded), "replayed": pct(self.first_replayed)},
        }


def by_connection(entries: list[Entry]) -> dict[int, list[Turn]]:
    conns: dict[int, list[Entry]] = {}
    for e in entries:
        conns.setdefault(e.conn, []).append(e)
    return {c: turns(es) for c, es in conns.items()}


def compare(copy: int, recorded: dict[int, list[Turn]], replayed: dict[int, list[Turn]], report: Report) -> None:
    for conn, rec_turns in recorded.items():
        got = replayed.get(conn, [])
        for a, b in zip(rec_turns, got, strict=False):
            report.turns += 1
            if a.first_ms is not None:
                report.first_recorded.append(a.first_ms)
            if b.first_ms is not None:
                report.first_replayed.append(b.first_ms)
            same = None
            if comparable(a, b):
                report.compared += 1
                same = a.text == b.text and a.reason == b.reason
                if not same:
                    report.differ.append(
                        {"copy": copy, "conn": conn, "turn": a.index, "recorded": a.text, "got": b.text}
                    )
            if copy == 0:
                report.per_turn.append(
                    {"conn": conn, "turn": a.index, "kind": a.kind, "same": same, "first_ms": [a.first_ms, b.first_ms]}
                )
        if len(got) < len(rec_turns):
            report.failed.append(f"copy {copy} connection {conn}: {len(got)} of {len(rec_turns)} turns came back")


async def run(
    recording: Recording,
    url: str,
    *,
    speed: float = 1.0,
    copies: int = 1,
    out: Path | None = None,
    progress: Progress | None = None,
) -> Report:
    recorded = by_connection(recording.entries)
    total = sum(len(t) for t in recorded.values()) * copies
    bar = progress or Progress(total)
    bar.total = total
    players = [Player(url, recording, speed=speed, on_turn_end=bar.step) for _ in range(copies)]
    t0 = time.monotonic()
    results = await asyncio.gather(*(p.play() for p in players), return_exceptions=True)
    report = Report(copies, seconds=time.monotonic() - t0)
    bar.close()
    for i, result in enumerate(results):
        if isinstance(result, BaseException):
            if not isinstance(result, (Stalled, OSError, TimeoutError)) and not _closed(result):
                raise result
            report.failed.append(f"copy {i}: {type(result).__name__}: {result}")
            result = players[i].entries  # what it got to is still compared
        compare(i, recorded, by_connection(result), report)
    if out is not None:
        write(out, url, str(recording.header.get("sub") or ""), players[0].entries)
    return report


def _closed(exc: BaseException) -> bool:
    from websockets.exceptions import InvalidHandshake, WebSocketException

    return isinstance(exc, (WebSocketException, InvalidHandshake))


def write(path: Path, url: str, sub: str, entries: list[Entry]) -> None:
    """The entries a player sent and received, as a recording (``replay diff`` compares it with another)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(header_line(url, sub))
        f.writelines(entry_line(e) for e in entries)


def print_report(report: Report, out: TextIO | None = None, *, turns: bool = False) -> None:
    """The summary; with ``turns``, first each turn of the first copy, its latency beside the recording's."""
    out = out or sys.stdout
    for t in report.per_turn if turns else ():
        rec, got = t["first_ms"]
        same = {True: "same text", False: "TEXT DIFFERS", None: "not deterministic"}[t["same"]]
        out.write(f"conn {t['conn']} turn {t['turn']} {t['kind']}: first delta {got} ms (recorded {rec} ms), {same}\n")
    s = report.summary()
    fd = s["first_delta_ms"]
    out.write(
        f"{s['turns']} turns ({s['copies']} copies) in {s['seconds']} s: {s['turns_per_s']} turns/s\n"
        f"deterministic turns compared: {s['deterministic_compared']}, differ: {s['differ']}\n"
        f"first delta ms  recorded p50 {fd['recorded']['p50']} p99 {fd['recorded']['p99']}  |  "
        f"replayed p50 {fd['replayed']['p50']} p99 {fd['replayed']['p99']}\n"
    )
    for d in report.differ[:10]:
        out.write(f"DIFFERS copy {d['copy']} conn {d['conn']} turn {d['turn']}: {d['recorded']!r} -> {d['got']!r}\n")
    for f in report.failed[:10]:
        out.write(f"FAILED {f}\n")
