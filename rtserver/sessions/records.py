"""The records of a session's journal file and how a session is rebuilt from them.

Every record names its session and says what it is (``op``), so records stand on their own: a damaged ``open``
record costs the persona and params (the session comes back with defaults, and the damage is reported), not the
turns after it.

    open     sid, persona, params, model, tids (turn ids reserved so far), story? (a card session's),
             user? (its owner; absent: "")
    turn     sid, and a TurnNode's fields
    head     sid, head                      (rollback)
    update   sid, persona, params
    story    sid, story                     (a card session's story state changed: the whole map)
    tids     sid, upto                      (more turn ids reserved)
    parked   sid, next_tid, ep, seq, at, frames   (the session left memory cleanly; last in the file)
"""

from __future__ import annotations

from typing import Any

from .history import TurnNode
from .journal import frame_record
from .store import FrameLogState, Loaded, SessionData


def open_record(data: SessionData, reserved: int) -> bytes:
    record = {
        "op": "open",
        "sid": data.sid,
        "persona": data.persona,
        "params": data.params,
        "model": data.model,
        "tids": reserved,
    }
    if data.user:
        record["user"] = data.user
    if data.story is not None:
        record["story"] = data.story
    return frame_record(record)


def turn_record(sid: str, node: TurnNode) -> bytes:
    return frame_record({"op": "turn", "sid": sid, **node.to_dict()})


def head_record(sid: str, head: int) -> bytes:
    return frame_record({"op": "head", "sid": sid, "head": head})


def update_record(sid: str, persona: str | None, params: dict[str, Any]) -> bytes:
    return frame_record({"op": "update", "sid": sid, "persona": persona, "params": params})


def story_record(sid: str, story: dict[str, Any]) -> bytes:
    return frame_record({"op": "story", "sid": sid, "story": story})


def tids_record(sid: str, upto: int) -> bytes:
    return frame_record({"op": "tids", "sid": sid, "upto": upto})


def parked_record(sid: str, next_tid: int, log: FrameLogState) -> bytes:
    return frame_record(
        {
            "op": "parked",
            "sid": sid,
            "next_tid": next_tid,
            "ep": log.epoch,
            "seq": log.last_seq,
            "at": log.last_at,
            "frames": log.frames,
        }
    )


def compacted(data: SessionData, reserved: int, log: FrameLogState | None) -> bytes:
    """The whole live state of a session as the fewest records: what a compaction writes."""
    out = [open_record(data, reserved)]
    out.extend(turn_record(data.sid, n) for n in sorted(data.history.nodes.values(), key=lambda n: n.tid))
    out.append(head_record(data.sid, data.history.head))
    if log is not None:
        out.append(parked_record(data.sid, data.history.next_tid, log))
    return b"".join(out)


def rebuild(sid: str, records: list[dict[str, Any]], default_model: str = "default") -> Loaded | None:
    """The session these records describe, or None if they hold nothing of it."""
    data: SessionData | None = None
    reserved, log, next_tid = 0, None, 1
    for r in records:
        if r.get("sid") != sid:
            continue  # a record that strayed into this file (damage the checksum missed): not this session's
        op = r.get("op")
        if data is None:
            data = SessionData(sid, None, {}, default_model)
        if op == "open":
            data.persona, data.params, data.model = r.get("persona"), r.get("params") or {}, r.get("model") or "default"
            reserved = max(reserved, int(r.get("tids") or 0))
            data.story = r.get("story")
            data.user = str(r.get("user") or "")
        elif op == "story":
            data.story = r.get("story")
        elif op == "turn":
            data.history.commit(_node(r))
        elif op == "head":
            data.history.head = int(r["head"])
        elif op == "update":
            data.persona, data.params = r.get("persona"), r.get("params") or {}
        elif op == "tids":
            reserved = max(reserved, int(r["upto"]))
        log = None
        if op == "parked":
            log = FrameLogState(str(r["ep"]), int(r["seq"]), list(r.get("frames") or ()), float(r.get("at") or 0))
            next_tid = int(r["next_tid"])
    if data is None:
        return None
    h = data.history
    if h.head and h.head not in h.nodes:
        h.head = max((n.tid for n in h.nodes.values() if n.tid < h.head), default=0)
    for node in h.nodes.values():  # a turn lost to damage: its children hang on the turn before it
        if node.parent and node.parent not in h.nodes:
            node.parent = max((t for t in h.nodes if t < node.parent), default=0)
    # Left cleanly, the ids handed out are known; otherwise any reserved id may have been seen by a client.
    h.next_tid = max(h.next_tid, next_tid if log is not None else reserved + 1)
    return Loaded(data, max(reserved, h.next_tid - 1), log)


def _node(r: dict[str, Any]) -> TurnNode:
    return TurnNode(
        int(r["tid"]),
        int(r["parent"]),
        r["kind"],
        r["user"],
        r["reply"],
        r["reason"],
        r.get("usage") or {},
        r.get("schema"),
        r.get("grammar"),
        r.get("code"),
        r.get("edited"),
    )
