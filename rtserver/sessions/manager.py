"""The sessions a node holds in memory, and how they come and go.

A session is in memory while a connection is attached to it or a frame named it within ``session_idle_s``, and
at most ``max_resident_sessions`` are; any other lives only in the store and is loaded when a frame names it.
Leaving memory (``park``) keeps its frame log in the store, so a resume across a page-out still recovers. The
maintenance pass also ages out frame logs (``frame_log_ttl``) and deletes sessions unused for ``session_ttl``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from rtprotocol import encode_msgpack

from ..errors import Busy, ClientError, StoreFailed
from .quota import Quota
from .session import BroadcastHook, FrameHook, Session, Subscriber, new_epoch
from .store import SessionData, Store

log = structlog.get_logger("rtserver.sessions")


@dataclass(frozen=True)
class SessionConfig:
    default_model: str = "default"
    models: frozenset[str] = frozenset({"default"})
    default_params: dict[str, Any] = field(default_factory=dict)
    resume_grace: float = 10.0
    max_text: int = 16384
    frame_log: int = 1024
    frame_log_ttl: float = 600.0
    session_idle_s: float = 300.0
    max_resident: int = 20000


class SessionManager:
    def __init__(
        self,
        store: Store,
        config: SessionConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        quota: Quota | None = None,
    ) -> None:
        self.store = store
        self.quota = quota  # per-user stored sessions; None: not counted
        self.config = config
        self.clock, self.wall = clock, wall
        self.sessions: dict[str, Session] = {}  # in memory
        self._loading: dict[str, asyncio.Task[Session]] = {}
        self._parking: dict[str, asyncio.Task[None]] = {}
        self.paged_in = self.paged_out = 0
        self.on_frame: FrameHook | None = None  # where each numbered frame also goes (the Redis frame stream)
        self.on_broadcast: BroadcastHook | None = None  # and each unnumbered one (presence: the Redis channel)

    # --- finding and creating sessions ------------------------------------------------------------------------

    async def get(self, sid: str) -> Session:
        s = self.sessions.get(sid)
        if s is None:
            task = self._loading.get(sid)
            if task is None:
                task = self._loading[sid] = asyncio.get_running_loop().create_task(self._page_in(sid))
                task.add_done_callback(lambda _: self._loading.pop(sid, None))
            s = await asyncio.shield(task)
        s.last_used = self.clock()
        return s

    async def _page_in(self, sid: str) -> Session:
        parking = self._parking.get(sid)
        if parking is not None:
            await asyncio.shield(parking)
        self._make_room()
        found = await self.store.load(sid)
        if found is None:
            raise ClientError(
                "no session with this id: it was closed, expired or never existed; open a new one",
                code="unknown_session",
            )
        gen = found.gen or await self.store.acquire(sid)
        s = Session.loaded(found, self.config.frame_log, gen=gen, now=self.clock())
        s.on_frame, s.on_broadcast = self.on_frame, self.on_broadcast
        self.sessions[sid] = s
        self.paged_in += 1
        return s

    async def create(
        self,
        persona: str | None,
        params: dict[str, Any],
        model: str | None,
        story: dict[str, Any] | None = None,
        user: str = "",
        quota: int = 0,
    ) -> Session:
        """A new session; ``story``: a card session's story state (``Story.to_dict``), already checked; ``user``:
        who it belongs to; ``quota``: how many stored sessions that user may keep (0: any number)."""
        model = model or self.config.default_model
        if model not in self.config.models:
            raise ClientError(
                f"model {model[:60]!r} is not configured here; choose one of {sorted(self.config.models)}",
                code="unknown_model",
            )
        self.check_text(persona, "persona")
        self._make_room()
        sid, owner = secrets.token_urlsafe(16), self.store.node_id
        data = SessionData(sid, persona, dict(params), model, owner=owner, story=story, user=user)
        counted = self.quota if user and quota > 0 else None
        if counted is not None:
            await counted.claim(user, sid, quota)
        try:
            gen = await self.store.acquire(sid)
            epoch = new_epoch()
            reserved = await self.store.create(data, gen, epoch)
        except BaseException:
            if counted is not None:
                await counted.release(user, sid)
            raise
        if counted is not None:
            counted.written(sid)
        s = Session(data, self.config.frame_log, gen=gen, reserved=reserved, now=self.clock(), epoch=epoch)
        self.sessions[data.sid] = s
        s.on_frame, s.on_broadcast = self.on_frame, self.on_broadcast
        return s

    def check_text(self, text: str | None, field: str) -> None:
        if text is not None and len(text) > self.config.max_text:
            raise ClientError(
                f"{field} is {len(text)} characters; the limit is {self.config.max_text}", code="too_large"
            )

    def _make_room(self) -> None:
        """Before a session enters memory: page out the least recently used idle one if memory is full."""
        if len(self.sessions) < self.config.max_resident:
            return
        idle = [s for s in self.sessions.values() if s.idle]
        if not idle:
            raise Busy(
                f"this node holds {len(self.sessions)} sessions in use (max_resident_sessions); "
                "retry later or connect to another node",
                retry_after=5.0,
            )
        self.page_out(min(idle, key=lambda s: s.last_used))

    def page_out(self, s: Session) -> None:
        """Take an idle session out of memory now; its frame log and compaction are written behind it."""
        del self.sessions[s.sid]
        task = self._parking[s.sid] = asyncio.get_running_loop().create_task(self._park(s))
        task.add_done_callback(lambda _: self._parking.pop(s.sid, None))
        self.paged_out += 1

    async def _park(self, s: Session) -> None:
        try:
            await self.store.park(s.sid, s.gen, s.data, s.reserved, s.log_state())
        except StoreFailed as exc:  # its turns are durable already; only the frame log is lost (a new epoch)
            log.warning("park_failed", sid=s.sid, error=exc.message)

    # --- attach / detach --------------------------------------------------------------------------------------

    def attach(self, s: Session, sub: Subscriber) -> None:
        if sub not in s.subscribers:
            s.subscribers.add(sub)
            present = s.join(sub.who)
            if sub.presence:
                sub.push(encode_msgpack({"t": "presence", "sid": s.sid, "present": present}))
        s.last_used = self.clock()
        if s.grace is not None:
            s.grace.cancel()
            s.grace = None

    def detach(self, s: Session, sub: Subscriber) -> None:
        """When the last connection leaves during a turn, the turn runs on for ``resume_grace`` seconds so a
        reconnecting client resumes it; if nobody comes back in time it ends as ``cancelled``."""
        if sub in s.subscribers:
            s.subscribers.discard(sub)
            s.leave(sub.who["id"])
        s.last_used = self.clock()
        if not s.subscribers and s.running and s.grace is None:
            s.grace = asyncio.get_running_loop().call_later(self.config.resume_grace, self._grace_over, s)

    def _grace_over(self, s: Session) -> None:
        s.grace = None
        if not s.subscribers and s.running:
            log.info("turn_abandoned", sid=s.sid, tid=s.running.node.tid)
            s.running.request.cancel.set()

    # --- changes that are not turns ----------------------------------------------------------------------------

    async def rollback(self, s: Session, tid: int) -> None:
        if s.running:
            raise ClientError("a turn is running; cancel it before rolling back", code="turn_running")
        if tid != 0 and tid not in s.history.nodes:
            raise ClientError(f"turn {tid} does not exist in this session", code="unknown_turn")
        await self.store.set_head(s.sid, s.gen, tid)
        s.history.head = tid
        self.updated(s)

    async def update(self, s: Session, persona: str | None, params: dict[str, Any]) -> None:
        self.check_text(persona, "persona")
        new_persona = persona if persona is not None else s.data.persona
        new_params = {**s.data.params, **params}
        await self.store.update(s.sid, s.gen, new_persona, new_params)
        s.data.persona, s.data.params = new_persona, new_params
        self.updated(s)

    def updated(self, s: Session) -> None:
        """Tell every client of the session its full state after a change (``session.updated``)."""
        s.emit({"t": "session.updated", "sid": s.sid, "seq": 0, "state": s.state()}, self.wall())

    async def close(self, s: Session) -> None:
        """Delete the session (its running turn, if any, was cancelled and ended first)."""
        await self.store.delete(s.sid, s.gen)
        s.deleted = True
        if self.quota is not None and s.data.user:
            await self.quota.release(s.data.user, s.sid)
        s.emit({"t": "session.closed", "sid": s.sid, "seq": 0}, self.wall())
        self.sessions.pop(s.sid, None)

    # --- maintenance ------------------------------------------------------------------------------------------

    def sweep(self) -> int:
        """Page out sessions idle past ``session_idle_s`` and forget frames older than ``frame_log_ttl``."""
        now, wall, c = self.clock(), self.wall(), self.config
        out = [s for s in self.sessions.values() if s.idle and now - s.last_used >= c.session_idle_s]
        for s in out:
            self.page_out(s)
        for s in self.sessions.values():
            if s.last_frame_at and wall - s.last_frame_at >= c.frame_log_ttl and s.log.first_seq <= s.log.last_seq:
                s.log.age_out()
                log.info("frames_aged_out", sid=s.sid, seq=s.log.last_seq)
        return len(out)

    async def expire(self) -> int:
        keep = set(self.sessions) | set(self._loading) | set(self._parking)
        gone = await self.store.expire(self.wall(), keep)
        if gone:
            log.info("sessions_expired", sessions=gone)
        return gone

    async def park_all(self) -> None:
        """At shutdown: every idle session leaves memory with its frame log, so resumes recover after a restart."""
        for s in [s for s in self.sessions.values() if s.running is None]:
            self.page_out(s)
        if self._parking:
            await asyncio.wait(list(self._parking.values()))
