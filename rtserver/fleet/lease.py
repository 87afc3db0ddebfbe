"""A node's lease on the sessions it owns: one key per node, renewed well inside its TTL.

While ``rt:node:<id>`` exists, the sessions whose ``owner`` is this node are its own and frames for them on other
nodes are relayed here. A node that dies stops renewing; ``lease_ttl`` later its sessions are free to be taken
over by whichever node next needs one (``ACQUIRE``). One key per node, not per session: renewing costs one
command per interval however many sessions a node holds.
"""

from __future__ import annotations

import asyncio

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = structlog.get_logger("rtserver.fleet")


def node_key(node: str) -> str:
    return f"rt:node:{node}"


class NodeLease:
    def __init__(self, redis: Redis, node_id: str, ttl: float) -> None:
        self.redis, self.node_id, self.ttl = redis, node_id, ttl
        self.held = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._renew()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="node-lease")

    async def stop(self, release: bool = True) -> None:
        if self._task is not None:
            self._task.cancel()
        if release:
            try:
                await self.redis.delete(node_key(self.node_id))
            except RedisError:
                pass

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)  # a timer by design: renewal is periodic, not a wait for an event
            await self._renew()

    async def _renew(self) -> None:
        try:
            # XX after the first time: a lease that expired (this node was paused past it) is not silently
            # renewed; its sessions may have been taken over, and their writes are fenced from here on.
            ok = await self.redis.set(node_key(self.node_id), 1, px=int(self.ttl * 1000), xx=self.held)
        except RedisError as exc:
            log.warning("lease_not_renewed", node=self.node_id, error=str(exc))
            return
        if not ok:
            log.error("lease_lost", node=self.node_id)
            ok = await self.redis.set(node_key(self.node_id), 1, px=int(self.ttl * 1000))
        self.held = bool(ok)

    async def remaining(self, node: str) -> float:
        """Seconds left of ``node``'s lease (0: it has none: dead, or never was)."""
        ms = await self.redis.pttl(node_key(node))
        return max(0.0, ms / 1000) if ms is not None and ms > 0 else 0.0

    async def alive(self, node: str) -> bool:
        if node == self.node_id:
            return True
        return bool(await self.redis.exists(node_key(node)))
