"""Where sessions live: one interface, ``Store``, that the embedded default implements in process with a journal
under ``--data-dir`` and that the cross-node work implements on Redis.

A store persists session records (open, turn, head, update, close) and hands out each session's frame log with
its epoch. The in-process frame log is not persisted: after a restart every session gets a new epoch, so a
client resuming across a restart gets a snapshot (``recovered: false``, ``why: epoch_changed``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rtprotocol import FrameLog

from .history import History, TurnNode
from .journal import Journal


@dataclass
class SessionData:
    sid: str
    persona: str | None
    params: dict[str, Any]
    model: str
    history: History = field(default_factory=History)
    owner: str = ""  # the node that holds this session's KV (multi-node work)


class Store(Protocol):
    node_id: str

    async def open(self) -> dict[str, SessionData]: ...
    async def close(self) -> None: ...
    async def create(self, data: SessionData) -> None: ...
    async def save_turn(self, sid: str, node: TurnNode) -> None: ...
    async def set_head(self, sid: str, head: int) -> None: ...
    async def update(self, sid: str, persona: str | None, params: dict[str, Any]) -> None: ...
    async def delete(self, sid: str) -> None: ...
    def frame_log(self, sid: str) -> FrameLog[bytes]: ...


def new_epoch() -> str:
    return secrets.token_hex(4)


class LocalStore:
    """Sessions in process, journaled to ``data_dir/sessions.journal`` with group fsync."""

    def __init__(self, data_dir: Path, node_id: str, log_capacity: int, *, fsync: bool = True) -> None:
        self.node_id = node_id
        self.log_capacity = log_capacity
        self.journal = Journal(data_dir / "sessions.journal", fsync=fsync)

    async def open(self) -> dict[str, SessionData]:
        sessions = replay(Journal.read(self.journal.path))
        self.journal.path.parent.mkdir(parents=True, exist_ok=True)
        self.journal.rewrite(compact(sessions))
        self.journal.open()
        return sessions

    async def close(self) -> None:
        await self.journal.close()

    async def create(self, data: SessionData) -> None:
        await self.journal.append(
            {"op": "open", "sid": data.sid, "persona": data.persona, "params": data.params, "model": data.model}
        )

    async def save_turn(self, sid: str, node: TurnNode) -> None:
        await self.journal.append({"op": "turn", "sid": sid, **node.to_dict()})

    async def set_head(self, sid: str, head: int) -> None:
        await self.journal.append({"op": "head", "sid": sid, "head": head})

    async def update(self, sid: str, persona: str | None, params: dict[str, Any]) -> None:
        await self.journal.append({"op": "update", "sid": sid, "persona": persona, "params": params})

    async def delete(self, sid: str) -> None:
        await self.journal.append({"op": "close", "sid": sid})

    def frame_log(self, sid: str) -> FrameLog[bytes]:
        return FrameLog(new_epoch(), self.log_capacity)


def replay(records: Any) -> dict[str, SessionData]:
    sessions: dict[str, SessionData] = {}
    for r in records:
        op, sid = r.get("op"), r.get("sid")
        if op == "open":
            sessions[sid] = SessionData(sid, r["persona"], r["params"], r["model"])
            continue
        s = sessions.get(sid)
        if s is None:
            continue
        if op == "turn":
            s.history.commit(
                TurnNode(
                    r["tid"],
                    r["parent"],
                    r["kind"],
                    r["user"],
                    r["reply"],
                    r["reason"],
                    r.get("usage", {}),
                    r.get("schema"),
                    r.get("grammar"),
                )
            )
        elif op == "head":
            s.history.head = r["head"]
        elif op == "update":
            s.persona, s.params = r["persona"], r["params"]
        elif op == "close":
            del sessions[sid]
    return sessions


def compact(sessions: dict[str, SessionData]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for s in sessions.values():
        out.append({"op": "open", "sid": s.sid, "persona": s.persona, "params": s.params, "model": s.model})
        out.extend(
            {"op": "turn", "sid": s.sid, **n.to_dict()} for n in sorted(s.history.nodes.values(), key=lambda n: n.tid)
        )
        out.append({"op": "head", "sid": s.sid, "head": s.history.head})
    return out
