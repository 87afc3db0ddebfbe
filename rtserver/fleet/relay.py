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
from .channels import Channels
from .store import keys, unpack

log = structlog.get_logger("rtserver.fleet")


@dataclass
class _Watch:
    epoch: str | None = None  # None: not known yet (nothing read or relayed)
    seen: int = 0  # the highest seq read or relayed
    subs: dict[Subscriber, int] = field(default_factory=dict)  # each client's last seq
    moved: asyncio.Event = field(default_factory=asyncio.Event)  # set (and cleared) whenever ``seen`` grows
    holds: int = 0  # handles that watch and have not attached yet: the subscription stays for them
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # the subscription is confirmed


class Relay:
    def __init__(self, redis: Redis, blocking: Any, is_local: Callable[[str], bool], *, cluster: bool = False) -> None:
        self.redis = redis  # short timeouts: stream reads
        self.channels = Channels(blocking, cluster, self._message, self._lost)
        self.is_local = is_local
        self.watches: dict[str, _Watch] = {}
        self.relayed = self.filled = 0

    def start(self) -> None:
        pass  # each subscription connection starts its reader with its first channel

    async def close(self) -> None:
        await self.channels.close()

    # --- who watches what -------------------------------------------------------------------------------------

    async def watch(self, sid: str) -> None:
        """Subscribe to the session's channel, confirmed, before its frames are read: none falls between."""
        w = self.watches.get(sid)
        if w is None:
            w = self.watches[sid] = _Watch()
            w.holds += 1
            try:
                await self.channels.add(keys(sid)[3])
            finally:
                w.ready.set()
        else:
            w.holds += 1
            await w.ready.wait()

    def known(self, sid: str, epoch: str, seq: int) -> None:
        """What a read of the session's stream found: its epoch and last seq."""
        w = self.watches.get(sid)
        if w is None:
            return
        if w.epoch is None:
            w.epoch = epoch
        w.seen = max(w.seen, seq)

    async def caught_up(self, sid: str, seq: int, bound: float) -> bool:
        """Whether frames up to ``seq`` have been relayed (waiting up to ``bound`` seconds for them)."""
        w = self.watches.get(sid)
        try:
            async with asyncio.timeout(bound):
                while w is not None and w.seen < seq:
                    await w.moved.wait()
                    w = self.watches.get(sid)
        except TimeoutError:
            return False
        return w is not None

    def attach(self, sid: str, sub: Subscriber, last_seq: int) -> None:
        w = self.watches.get(sid)
        if w is None:  # the session moved (here, or to a new epoch) between the read and now: resume again
            sub.close(E.CLOSE_RESTART, "the session moved between nodes: resume")
            return
        w.holds = max(0, w.holds - 1)
        w.subs[sub] = last_seq
        if w.seen > last_seq:  # frames arrived between the read and now: fetch them for this client
            asyncio.get_running_loop().create_task(self._fill(sid, w, [sub], w.seen + 1))

    def detach(self, sid: str, sub: Subscriber) -> None:
        w = self.watches.get(sid)
        if w is None:
            return
        w.subs.pop(sub, None)
        if not w.subs and not w.holds:
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
        if w is not None:
            w.holds = max(0, w.holds - 1)
        if w is not None and not w.subs and not w.holds:
            del self.watches[sid]
            asyncio.get_running_loop().create_task(self._unsubscribe(sid))

    async def _unsubscribe(self, sid: str) -> None:
        if sid not in self.watches:
            try:
                await self.channels.remove(keys(sid)[3])
            except RedisError:
                pass

    # --- relaying ---------------------------------------------------------------------------------------------

    async def _message(self, channel: str, data: bytes) -> None:
        sid = channel[len("rt:{") : channel.rindex("}")]
        await self._deliver(sid, *unpack(data))

    def _lost(self, channels: set[str]) -> None:
        """A subscription connection was made again: fill what its sessions' clients missed meanwhile."""

        async def fill() -> None:
            for channel in channels:
                sid = channel[len("rt:{") : channel.rindex("}")]
                w = self.watches.get(sid)
                if w is not None:
                    try:
                        await self._fill(sid, w, list(w.subs), None)
                    except RedisError as exc:
                        log.warning("relay_fill_failed", sid=sid, error=str(exc))

        asyncio.get_running_loop().create_task(fill())

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
        w.moved.set()
        w.moved.clear()
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
