"""A session in memory: its state, its numbered frames fanned out to the connections attached, its running turn.

A turn belongs to its session, not to the connection that asked for it: a client that drops mid-turn does not
stop it (see ``SessionManager.detach`` for how long it runs on alone).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any, Protocol

from rtprotocol import FrameLog, encode_msgpack
from rtprotocol import frames as F

from ..engine.base import Request
from ..story.state import Story
from .history import History, TurnNode
from .store import FrameLogState, Loaded, SessionData


class Subscriber(Protocol):
    who: dict[str, str]  # id (per connection) and client (hello.client): what presence shows of it
    presence: bool  # it asked for presence frames (hello.presence)

    def push(self, data: bytes) -> None: ...
    def close(self, code: int, reason: str) -> None: ...


FrameHook = Callable[["Session", bytes, float], None]
BroadcastHook = Callable[["Session", bytes], None]


class RunningTurn:
    def __init__(
        self, node: TurnNode, request: Request, structured: bool = False, lore: list[int | str] | None = None
    ) -> None:
        self.node = node
        self.request = request
        self.structured = structured  # the reply is constrained to a JSON schema; turn.end says if it fits
        self.lore = lore  # a card session's turn: the book's entries its prompt carries (turn.end.lore)
        self.text: list[str] = []
        self.task: asyncio.Task[None] | None = None


def new_epoch() -> str:
    return secrets.token_hex(4)


class Session:
    def __init__(
        self, data: SessionData, capacity: int, *, gen: int, reserved: int, now: float, epoch: str = ""
    ) -> None:
        self.data = data
        self.story = Story.from_dict(data.story) if data.story is not None else None  # (parsed once, kept)
        self.lore_seen: dict[int, tuple[int, ...]] = {}  # the keyed book entries each turn's prompt activated
        self.capacity = capacity  # frames kept for resume
        self.log: FrameLog[bytes] = FrameLog(epoch or new_epoch(), capacity)
        self.gen = gen  # the store's fencing token for this node's writes
        self.reserved = reserved  # turn ids up to this one are durably reserved
        self.subscribers: set[Subscriber] = set()
        self.running: RunningTurn | None = None
        self.grace: asyncio.TimerHandle | None = None
        self.last_used = now  # monotonic: when a frame last named it (idle sessions leave memory)
        self.last_frame_at = 0.0  # wall clock: when its last frame was numbered (frame logs age out)
        self.on_frame: FrameHook | None = None  # each numbered frame also goes here (Redis: the frame stream)
        self.on_broadcast: BroadcastHook | None = None  # each unnumbered frame too (Redis: the channel)
        self.present: dict[str, dict[str, str]] = {}  # the connections attached, on any node (presence)
        self.deleted = False  # gone from the store: only its session.closed frame is still to go out

    @classmethod
    def loaded(cls, found: Loaded, capacity: int, *, gen: int, now: float) -> Session:
        s = cls(found.data, capacity, gen=gen, reserved=found.reserved, now=now)
        kept = found.log
        if kept is not None:  # it left memory cleanly: the same epoch and seq, and the frames it kept
            s.log = FrameLog(kept.epoch, capacity, kept.last_seq - len(kept.frames))
            for frame in kept.frames:
                s.log.append(frame)
            s.last_frame_at = kept.last_at
        return s

    @property
    def sid(self) -> str:
        return self.data.sid

    @property
    def history(self) -> History:
        return self.data.history

    @property
    def idle(self) -> bool:
        return not self.subscribers and self.running is None

    def emit(self, frame: F.Frame, now: float) -> None:
        """Number the frame, encode it once (msgpack), keep it in the log and queue it to every attached
        connection. Frames live on as bytes only: a JSON client's connection renders its own copy."""
        frame["seq"] = self.log.last_seq + 1
        data = encode_msgpack(frame)
        self.log.append(data)
        self.last_frame_at = now
        for sub in tuple(self.subscribers):
            sub.push(data)
        if self.on_frame is not None:
            self.on_frame(self, data, now)

    def broadcast(self, frame: F.Frame) -> None:
        """An unnumbered frame (presence) to every connection attached, here and on other nodes."""
        data = encode_msgpack(frame)
        for sub in tuple(self.subscribers):
            if sub.presence:
                sub.push(data)
        if self.on_broadcast is not None:
            self.on_broadcast(self, data)

    def join(self, who: dict[str, str]) -> list[dict[str, str]]:
        """A connection attached: everyone hears of it; it gets the list of who is there."""
        self.present[who["id"]] = who
        self.broadcast({"t": "presence", "sid": self.sid, "join": who})
        return list(self.present.values())

    def leave(self, who_id: str) -> None:
        who = self.present.pop(who_id, None)
        if who is not None:
            self.broadcast({"t": "presence", "sid": self.sid, "leave": who})

    def log_state(self) -> FrameLogState:
        frames = self.log.resume(self.log.epoch, self.log.first_seq - 1).items
        return FrameLogState(self.log.epoch, self.log.last_seq, frames, self.last_frame_at)

    def state(self) -> dict[str, Any]:
        state = {
            "model": self.data.model,
            "persona": self.data.persona,
            "params": self.data.params,
            "head": self.history.head,
            "turns": len(self.history.path()),
            "running": self.running.node.tid if self.running else None,
        }
        if self.story is not None:
            state["story"] = self.story.public()
        return state

    def set_story(self, story: Story) -> None:
        self.story, self.data.story = story, story.to_dict()

    def snapshot(self) -> dict[str, Any]:
        children: dict[int, list[int]] = {}
        for n in self.history.nodes.values():
            children.setdefault(n.parent, []).append(n.tid)
        turns = []
        for n in self.history.path():
            turn = n.public()
            if len(alts := children.get(n.parent, ())) > 1:
                turn["alts"] = sorted(alts)  # the turns answering the same point: regenerates, edits, greetings
            turns.append(turn)
        snap: dict[str, Any] = {"turns": turns, "running": None}
        if self.running:
            r = self.running
            snap["running"] = {
                "tid": r.node.tid,
                "kind": r.node.kind,
                "parent": r.node.parent,
                "user": r.node.user,
                "text": "".join(r.text),
            }
        return snap

    def session_frame(
        self, *, frame_id: Any = None, snapshot: bool = False, recovered: bool | None = None, why: str | None = None
    ) -> F.Frame:
        """The reply to open/attach/resume. It carries the current seq but is not itself a numbered frame."""
        f: F.Frame = {
            "t": "session",
            "sid": self.sid,
            "seq": self.log.last_seq,
            "ep": self.log.epoch,
            "state": self.state(),
        }
        if frame_id is not None:
            f["id"] = frame_id
        if recovered is not None:
            f["recovered"] = recovered
        if why is not None:
            f["why"] = why
        if snapshot:
            f["snap"] = self.snapshot()
        return f
