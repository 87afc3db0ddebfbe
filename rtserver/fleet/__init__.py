"""Nodes sharing sessions through Redis (``--redis``): the store, the node lease, the relay of frames to clients
on other nodes and the forwarding of their requests to a session's owner. See docs/adr/0007."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import structlog
from redis.exceptions import RedisError

from ..sessions.manager import SessionManager
from ..sessions.session import Session
from ..sessions.turns import Turns
from ..settings import Settings
from .clients import client, is_cluster
from .fallback import Fallback
from .lease import NodeLease
from .quota import RedisQuota
from .relay import Relay
from .remote import FleetSessions
from .rpc import Rpc
from .store import RedisStore, keys, pack

log = structlog.get_logger("rtserver.fleet")


class Fleet:
    def __init__(self, settings: Settings, node_name: str) -> None:
        s = settings
        # Each start is a new owner: sessions a crashed incarnation held are taken over, never silently resumed.
        self.node_id = f"{node_name}.{secrets.token_hex(3)}"
        self.cluster = s.redis_cluster == "true" or (s.redis_cluster == "auto" and is_cluster(s.redis_url, 1.0))
        self.redis = client(s.redis_url, s.redis_timeout, self.cluster)
        self.blocking = client(s.redis_url, None, self.cluster)
        fallback = Fallback(Path(s.data_dir) / "redis-pending", fsync=s.fsync)
        self.store = RedisStore(self.redis, self.node_id, frame_log=s.frame_log, frame_log_ttl=s.frame_log_ttl,
                                session_ttl=s.session_ttl, fallback=fallback)  # fmt: skip
        self.lease = NodeLease(self.redis, self.node_id, s.lease_ttl)
        self.store.alive = self.lease.alive
        self.rpc = Rpc(self.redis, self.blocking, self.node_id, timeout=max(0.5, s.lease_ttl / 3), attempts=6)
        self.rpc.remaining = self.lease.remaining
        self.relay: Relay | None = None
        self.sessions: FleetSessions | None = None
        self._marked: dict[str, int] = {}  # sid -> the running turn already recorded in Redis

    def bind(self, manager: SessionManager, turns: Turns, cards: Any = None) -> FleetSessions:
        self.relay = Relay(self.redis, self.blocking, lambda sid: sid in manager.sessions, cluster=self.cluster)
        self.sessions = FleetSessions(manager, turns, self.store, self.relay, self.rpc, cards)
        manager.on_frame = self._frame
        manager.on_broadcast = self._broadcast
        manager.quota = RedisQuota(self.redis, self.store)
        return self.sessions

    def _frame(self, s: Session, data: bytes, now: float) -> None:
        if s.deleted:  # its keys are gone (session.closed): the last frame goes to the other nodes' clients direct
            self._publish(s, s.log.last_seq, data)
            return
        running = b""
        r = s.running
        if r is not None and self._marked.get(s.sid) != r.node.tid:  # the turn.start of a new turn
            self._marked[s.sid] = r.node.tid
            n = r.node
            running = pack({"tid": n.tid, "parent": n.parent, "kind": n.kind, "user": n.user})
        elif r is None:
            self._marked.pop(s.sid, None)
        self.store.frames.add(s.sid, s.gen, s.log.epoch, s.log.last_seq, now, data, running)

    def _broadcast(self, s: Session, data: bytes) -> None:
        """Presence to the other nodes' clients: straight to the channel, unnumbered (``first`` 0)."""
        self._publish(s, 0, data)

    def _publish(self, s: Session, first: int, data: bytes) -> None:
        async def publish() -> None:
            try:
                await self.redis.spublish(keys(s.sid)[3], pack([s.log.epoch, first, [data]]))
            except RedisError as exc:
                log.info("frame_not_relayed", sid=s.sid, seq=first, error=str(exc))

        asyncio.get_running_loop().create_task(publish())

    async def start(self) -> None:
        assert self.relay is not None
        self.rpc.start()
        self.relay.start()
        await self.lease.start()
        log.info("fleet_joined", node=self.node_id, lease_ttl=self.lease.ttl, cluster=self.cluster)

    async def stop(self) -> None:
        """After every session was handed back: stop answering, let the lease go, close the clients."""
        await self.store.frames.drain()
        await self.rpc.close()
        if self.relay is not None:
            await self.relay.close()
        await self.lease.stop()
        await self.redis.aclose()
        await self.blocking.aclose()
