"""The ``Store``: where sessions live between turns, and what a node must hold to write to one.

The embedded default (``LocalStore``) keeps each session in a journal file under ``--data-dir``; the cross-node
store keeps them in Redis. Both answer the same small, async calls:

- ``create`` / ``load`` / ``park``: a session enters memory new or on demand, and leaves it with its frame log
  (epoch, seq, recent frames), so a client resuming across a page-out still recovers.
- ``save_turn``, ``set_head``, ``update``, ``update_story``, ``reserve_tids``, ``delete``: the writes. Each
  carries the writer's generation (a fencing token from ``acquire``); the store refuses a write from a
  generation that is no longer the session's owner (``Fenced``). Embedded, a node owns everything it loaded; in
  Redis the lease expires.
- ``renew``: keep the lease; ``expire``: delete sessions unused for the TTL.

A write that cannot be made durable raises ``StoreFailed``; ``degraded`` says the last write failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from .history import History, TurnNode

TID_BLOCK = 32  # turn ids reserved ahead in one durable write, so a crash never hands one out twice


@dataclass
class SessionData:
    sid: str
    persona: str | None
    params: dict[str, Any]
    model: str
    history: History = field(default_factory=History)
    owner: str = ""  # the node that holds this session's KV (multi-node work)
    # A card session's story state, as ``rtserver.story.state.Story.to_dict`` makes it: a JSON-able map (card,
    # user, vars, vars_at, note, note_depth), or None for a session without a card. Every store keeps it whole.
    story: dict[str, Any] | None = None
    user: str = ""  # the user it belongs to ("" without auth: anyone who knows the id)


@dataclass
class FrameLogState:
    """A session's frame log as it leaves memory: its epoch, last seq, the frames still kept (msgpack bytes),
    and the wall-clock time of the last frame (for ``frame_log_ttl``)."""

    epoch: str
    last_seq: int
    frames: list[bytes]
    last_at: float


@dataclass
class Loaded:
    data: SessionData
    reserved: int  # turn ids up to this one may be given out without another write
    log: FrameLogState | None  # None: the session did not leave memory cleanly (a new epoch starts)
    gen: int = 0  # set by a store that takes ownership as it loads (Redis); 0: ``acquire`` it after


class OwnedElsewhere(Exception):
    """Another live node owns the session: relay to it rather than load it here."""

    def __init__(self, owner: str) -> None:
        super().__init__(owner)
        self.owner = owner


class Store(Protocol):
    node_id: str

    @property
    def degraded(self) -> bool: ...  # the last write failed (or waits to be written back): /readyz says so

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def acquire(self, sid: str) -> int: ...
    async def renew(self, sid: str, gen: int) -> bool: ...
    async def create(self, data: SessionData, gen: int, epoch: str = "") -> int: ...
    async def load(self, sid: str) -> Loaded | None: ...
    async def park(self, sid: str, gen: int, data: SessionData, reserved: int, log: FrameLogState) -> None: ...
    async def save_turn(self, sid: str, gen: int, node: TurnNode) -> None: ...
    async def reserve_tids(self, sid: str, gen: int, upto: int) -> None: ...
    async def set_head(self, sid: str, gen: int, head: int) -> None: ...
    async def update(self, sid: str, gen: int, persona: str | None, params: dict[str, Any]) -> None: ...
    async def update_story(self, sid: str, gen: int, story: dict[str, Any]) -> None: ...
    async def delete(self, sid: str, gen: int) -> None: ...
    async def expire(self, now: float, keep: set[str]) -> int: ...
    async def scrub(self) -> int: ...
