"""Frames of sessions owned by other nodes, relayed to this node's clients.

A node subscribes (``SSUBSCRIBE``) to the channel of each session it has clients for and nothing else. Pub/sub
is at most once, so every relayed frame is checked against the seq each client has: a gap is filled from the
session's frame stream, a repeat is dropped; a new epoch (the owner died and the session was taken over) closes
the clients with 1012 so they resume and get a snapshot, never a quiet gap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from rtprotocol import errors as E

from ..sessions.session import Subscriber
from .store import keys, unpack

log = structlog.get_logger("rtserver.fleet")


@dataclass
class _Watch:
    epoch: str | None = None  # None: not known yet (nothing read or relayed)
    seen: int = 0  # the highest seq read or relayed
    subs: dict[Subscriber, int] = field(default_factory=dict)  # each client's last seq


class Relay:
    def __init__(self, redis: Redis, blocking: Redis, is_local: Callable[[str], bool]) -> None:
        self.redis = redis  # short timeouts: stream reads
        self.pubsub = blocking.pubsub(ignore_subscribe_messages=True)
        self.is_local = is_local
        self.watches: dict[str, _Watch] = {}
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        # redis-py's PubSub makes its connection on the first command: two at once would make two, and the
        # subscriptions sent on the one it forgets would never be read. One (un)subscribe at a time.
        self._lock = asyncio.Lock()
        self.relayed = self.filled = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="relay")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.pubsub.aclose()

    # --- who watches what -------------------------------------------------------------------------------------

    async def watch(self, sid: str) -> None:
        """Subscribe to the session's channel (before its frames are read, so none falls between)."""
        if sid not in self.watches:
            self.watches[sid] = _Watch()
            async with self._lock:
                await self.pubsub.ssubscribe(keys(sid)[3])
            self._subscribed.set()

    def known(self, sid: str, epoch: str, seq: int) -> None:
        """What a read of the session's stream found: its epoch and last seq."""
        w = self.watches[sid]
        if w.epoch is None:
            w.epoch = epoch
        w.seen = max(w.seen, seq)

    def attach(self, sid: str, sub: Subscriber, last_seq: int) -> None:
        w = self.watches[sid]
        w.subs[sub] = last_seq
        if w.seen > last_seq:  # frames arrived between the read and now: fetch them for this client
            asyncio.get_running_loop().create_task(self._fill(sid, w, [sub], w.seen + 1))

    def detach(self, sid: str, sub: Subscriber) -> None:
        w = self.watches.get(sid)
        if w is None:
            return
        w.subs.pop(sub, None)
        if not w.subs:
            del self.watches[sid]
            asyncio.get_running_loop().create_task(self._unsubscribe(sid))

    def take_subscribers(self, sid: str) -> tuple[str | None, dict[Subscriber, int]]:
        """The session became this node's own: its clients move to it (the epoch and seqs they are at)."""
        w = self.watches.pop(sid, None)
        if w is None:
            return None, {}
        asyncio.get_running_loop().create_task(self._unsubscribe(sid))
        return w.epoch, w.subs

    def forget(self, sid: str) -> None:
        w = self.watches.get(sid)
        if w is not None and not w.subs:
            del self.watches[sid]
            asyncio.get_running_loop().create_task(self._unsubscribe(sid))

    async def _unsubscribe(self, sid: str) -> None:
        if sid not in self.watches:
            try:
                async with self._lock:
                    await self.pubsub.sunsubscribe(keys(sid)[3])
            except RedisError:
                pass

    # --- relaying ---------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._subscribed.wait()
            try:
                msg = await self.pubsub.get_message(timeout=None)
            except RedisError as exc:
                log.warning("relay_lost", error=str(exc))
                await self._resubscribe()
                continue
            if msg is None or msg.get("type") != "smessage":
                continue
            channel = msg["channel"].decode() if isinstance(msg["channel"], bytes) else msg["channel"]
            sid = channel[len("rt:{") : channel.rindex("}")]
            try:
                await self._deliver(sid, *unpack(msg["data"]))
            except RedisError as exc:
                log.warning("relay_fill_failed", sid=sid, error=str(exc))

    async def _resubscribe(self) -> None:
        """The subscription broke (Redis restarted, a failover): subscribe again, then fill what was missed."""
        while True:
            try:
                if self.watches:
                    async with self._lock:
                        await self.pubsub.ssubscribe(*(keys(sid)[3] for sid in self.watches))
                break
            except RedisError:
                await asyncio.sleep(0.5)  # Redis is down: try again (a retry pace, not a synchronisation)
        for sid, w in list(self.watches.items()):
            await self._fill(sid, w, list(w.subs), None)

    async def _deliver(self, sid: str, epoch: str, first: int, frames: list[bytes]) -> None:
        w = self.watches.get(sid)
        if w is None or self.is_local(sid):
            return
        if first == 0:  # unnumbered (presence): to the clients that asked for it, as it comes
            for sub in list(w.subs):
                if sub.presence:
                    for data in frames:
                        sub.push(data)
            return
        if w.epoch is not None and epoch != w.epoch and (w.epoch or w.seen):
            self._moved(sid, w)
            return
        w.epoch = epoch
        behind = [sub for sub, last in w.subs.items() if last + 1 < first]
        if behind:
            await self._fill(sid, w, behind, first)
        for sub, last in list(w.subs.items()):
            for i, data in enumerate(frames):
                if first + i > last:
                    sub.push(data)
            w.subs[sub] = max(last, first + len(frames) - 1)
        w.seen = max(w.seen, first + len(frames) - 1)
        self.relayed += len(frames)

    async def _fill(self, sid: str, w: _Watch, subs: list[Subscriber], upto: int | None) -> None:
        """Frames the channel did not bring, from the session's stream; a client too far behind resumes."""
        subs = [sub for sub in subs if sub in w.subs]
        if not subs:
            return
        start = min(w.subs[sub] for sub in subs) + 1
        end = f"{upto - 1}-0" if upto is not None else "+"
        entries: Any = await self.redis.xrange(keys(sid)[2], f"{start}-0", end)
        got = {int(eid.split(b"-")[0]): e[b"d"] for eid, e in entries}
        for sub in subs:
            last = w.subs.get(sub)
            if last is None:
                continue
            want = range(last + 1, (upto or max(got, default=last) + 1))
            if any(seq not in got for seq in want):
                sub.close(E.CLOSE_RESTART, "frames were lost on the way between nodes: resume")
                w.subs.pop(sub, None)
                continue
            for seq in want:
                sub.push(got[seq])
            w.subs[sub] = max(last, want.stop - 1)
            self.filled += len(want)

    def _moved(self, sid: str, w: _Watch) -> None:
        log.info("session_epoch_changed", sid=sid, clients=len(w.subs))
        for sub in list(w.subs):
            sub.close(E.CLOSE_RESTART, "the session's node failed and another took it over: resume")
        w.subs.clear()
        self.watches.pop(sid, None)
        asyncio.get_running_loop().create_task(self._unsubscribe(sid))
