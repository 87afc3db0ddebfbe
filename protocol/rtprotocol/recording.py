"""The session recording format of ``rtserver replay``: JSON lines, one frame a line, both ways, with its time.

    {"rtreplay": 1, "started": 1796400000.0, "url": "ws://127.0.0.1:8000/", "sub": "rt.v1.msgpack"}   header
    {"c": 0, "d": "c", "ms": 0.0, "f": {"t": "hello", "client": "rtclient"}}                           client frame
    {"c": 0, "d": "s", "ms": 1.9, "f": {"t": "welcome", ...}}                                          server frame

``c``: the connection (0, 1, ... in the order they opened; a reconnect is a new one), ``d``: ``c`` for a frame the
client sent, ``s`` for one it received, ``ms``: milliseconds since the recording started (a monotonic clock),
``f``: the frame as its map (the JSON form of PROTOCOL.md; msgpack frames hold nothing JSON cannot). Written by
``rtclient.Client(record=...)`` and by ``rtserver replay record`` (a recording proxy); read by ``replay run`` and
``replay diff``. A reader ignores keys it does not know.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

VERSION = 1


@dataclass(frozen=True)
class Entry:
    conn: int
    sent: bool  # the client sent it (else the client received it)
    ms: float
    frame: dict[str, Any]


@dataclass
class Recording:
    header: dict[str, Any]
    entries: list[Entry]

    def connections(self) -> dict[int, list[Entry]]:
        out: dict[int, list[Entry]] = {}
        for e in self.entries:
            out.setdefault(e.conn, []).append(e)
        return out


class RecordingError(ValueError):
    pass


class Recorder:
    """Writes a recording to ``sink`` (a text file, line-buffered by the caller if it wants lines out at once)."""

    def __init__(self, sink: IO[str], *, url: str = "", sub: str = "", clock: Callable[[], float] = time.monotonic):
        self.sink, self.clock = sink, clock
        self.t0 = clock()
        self.conns = 0
        sink.write(header_line(url, sub))

    @classmethod
    def to_file(cls, path: str | Path, **kw: Any) -> Recorder:
        return cls(open(path, "w", encoding="utf-8", buffering=1), **kw)  # noqa: SIM115 (held until close)

    def connection(self) -> int:
        """A new connection opened: its number."""
        self.conns += 1
        return self.conns - 1

    def log(self, conn: int, sent: bool, frame: dict[str, Any]) -> None:
        self.sink.write(entry_line(Entry(conn, sent, round((self.clock() - self.t0) * 1000, 3), frame)))

    def close(self) -> None:
        self.sink.close()


def header_line(url: str, sub: str) -> str:
    return json.dumps({"rtreplay": VERSION, "started": time.time(), "url": url, "sub": sub}) + "\n"


def entry_line(e: Entry) -> str:
    line = {"c": e.conn, "d": "c" if e.sent else "s", "ms": e.ms, "f": e.frame}
    return json.dumps(line, ensure_ascii=False, default=_bytes) + "\n"


def _bytes(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"{type(value).__name__} is not a frame value")


def parse(lines: Iterable[str]) -> Recording:
    it = iter(lines)
    try:
        header = json.loads(next(it))
    except (StopIteration, ValueError):
        raise RecordingError("not a recording: the first line must be its JSON header") from None
    if not isinstance(header, dict) or header.get("rtreplay") != VERSION:
        raise RecordingError(f'not a version {VERSION} recording (its header has no "rtreplay": {VERSION})')
    entries = []
    for n, line in enumerate(it, start=2):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            entries.append(Entry(int(r["c"]), r["d"] == "c", float(r["ms"]), dict(r["f"])))
        except (ValueError, KeyError, TypeError):
            raise RecordingError(f"line {n} is not a recording entry") from None
    return Recording(header, entries)


def load(path: str | Path) -> Recording:
    with open(path, encoding="utf-8") as f:
        return parse(f)
