"""The turns of one connection of a recording, as the client saw them: what asked for each, its text and finish
reason, whether its text is deterministic (a fixed seed, or temperature 0), and its latency to the first delta
measured at the client (the request sent to the first delta received)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rtprotocol.recording import Entry

TURN_FRAMES = ("say", "regenerate", "continue", "impersonate")
#: Server frames a replay waits for before sending the client frame that followed them in the recording (deltas
#: are left out: how a reply is cut into pieces is not the protocol's promise).
KEY_FRAMES = ("welcome", "session", "turn.start", "turn.end", "session.updated", "session.closed", "error", "pong")


@dataclass
class Turn:
    index: int  # its place among the connection's turns (turn.start order)
    tid: int
    kind: str
    deterministic: bool = False
    text: str = ""
    reason: str | None = None
    asked_ms: float | None = None  # when the client sent the frame that started it
    first_ms: float | None = None  # request to first delta, at the client
    total_ms: float | None = None  # request to turn.end, at the client
    deltas: list[str] = field(default_factory=list)


def deterministic(kind: str, own: dict[str, Any], session: dict[str, Any]) -> bool:
    """Whether a turn's text is fixed by what the client sent: its own seed, the session's (except for a
    regenerate, which draws a new one without its own), or greedy sampling."""
    if own.get("seed") is not None:
        return True
    params = {**session, **own}
    return (kind != "regenerate" and params.get("seed") is not None) or params.get("temperature") == 0


def turns(entries: Sequence[Entry]) -> list[Turn]:
    """The turns of one connection's entries, in the order they started."""
    opening: dict[Any, dict[str, Any]] = {}  # session.open frame id -> its params
    params: dict[str, dict[str, Any]] = {}  # sid -> the session's params as the client set them
    asked: dict[Any, tuple[Entry, bool]] = {}  # turn frame id -> (the frame, deterministic)
    default: str | None = None
    out: list[Turn] = []
    by_tid: dict[int, Turn] = {}
    for e in entries:
        f = e.frame
        t = f.get("t")
        if e.sent:
            sid = f.get("sid") or default
            if t == "session.open" and not f.get("sid"):
                opening[f.get("id")] = dict(f.get("params") or {})
            elif t == "session.update" and sid is not None:
                params.setdefault(sid, {}).update(f.get("params") or {})
            elif t in TURN_FRAMES:
                own = f.get("params") or {}
                asked[f.get("id")] = (e, deterministic(str(t), own, params.get(sid or "", {})))
            continue
        if t == "session" and f.get("id") is not None:
            default = f["sid"]
            if f.get("id") in opening:
                params[f["sid"]] = opening.pop(f.get("id"))
        elif t == "turn.start":
            req, det = asked.pop(f.get("id"), (None, False))
            turn = Turn(len(out), f["tid"], f["kind"], det, asked_ms=req.ms if req else None)
            out.append(turn)
            by_tid[f["tid"]] = turn
        elif t in ("delta", "turn.end") and (live := by_tid.get(f["tid"])) is not None:
            _feed(live, e, f)
            if t == "turn.end":
                del by_tid[f["tid"]]
    return out


def _feed(turn: Turn, e: Entry, f: dict[str, Any]) -> None:
    if f["t"] == "delta":
        if turn.first_ms is None and turn.asked_ms is not None:
            turn.first_ms = round(e.ms - turn.asked_ms, 3)
        turn.deltas.append(f["x"])
        return
    turn.text, turn.reason = "".join(turn.deltas), f["reason"]
    if turn.asked_ms is not None:
        turn.total_ms = round(e.ms - turn.asked_ms, 3)


def comparable(a: Turn, b: Turn) -> bool:
    """Whether two recordings' turns must have the same text: deterministic, and neither cut short by a cancel or
    an error (where a reply stops depends on timing)."""
    return a.deterministic and b.deterministic and {a.reason, b.reason} <= {"stop", "length"}


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]
