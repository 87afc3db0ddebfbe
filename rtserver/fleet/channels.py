"""Sharded subscriptions (``SSUBSCRIBE``) on a single Redis or a cluster, each confirmed before it is relied on.

In a cluster a sharded channel lives on the primary that owns its slot, so there is one subscription connection
per primary in use (a single Redis has one). Each connection has one reader; a subscription returns once Redis
confirmed it, so a frame published after ``add`` returns is never missed. A connection that breaks (Redis
restarted, a failover) is made again and its channels subscribed again; the caller is told, to fill the gap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from redis.exceptions import RedisError

from .clients import node_client

log = structlog.get_logger("rtserver.fleet")

OnMessage = Callable[[str, bytes], Awaitable[None]]
CONFIRM_S = 2.0  # bound on waiting for a subscription's confirmation; past it the frames' seqs catch any loss


class _Conn:
    def __init__(self, name: str, client: Any, on_message: OnMessage, on_lost: Callable[[set[str]], None]) -> None:
        self.name, self.client = name, client
        self.pubsub = client.pubsub()
        self.on_message, self.on_lost = on_message, on_lost
        self.channels: set[str] = set()
        self.confirm: dict[str, asyncio.Future[None]] = {}
        # redis-py's PubSub makes its connection on the first command: two at once would make two, and the
        # subscriptions sent on the one it forgets would never be read. One (un)subscribe at a time.
        self.lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None

    async def add(self, channel: str) -> None:
        fut = self.confirm[channel] = asyncio.get_running_loop().create_future()
        async with self.lock:
            await self.pubsub.ssubscribe(channel)
        self.channels.add(channel)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._read(), name=f"channels-{self.name}")
        try:
            await asyncio.wait_for(fut, CONFIRM_S)
        except TimeoutError:
            log.warning("subscription_not_confirmed", channel=channel, node=self.name)
        finally:
            self.confirm.pop(channel, None)

    async def remove(self, channel: str) -> None:
        self.channels.discard(channel)
        async with self.lock:
            await self.pubsub.sunsubscribe(channel)

    async def _read(self) -> None:
        while True:
            try:
                msg = await self.pubsub.get_message(timeout=None)
            except RedisError as exc:
                log.warning("subscription_lost", node=self.name, error=str(exc), channels=len(self.channels))
                await self._again()
                continue
            if msg is None:
                continue
            kind = msg.get("type")
            channel = msg["channel"].decode() if isinstance(msg.get("channel"), bytes) else msg.get("channel")
            if kind == "ssubscribe":
                fut = self.confirm.get(channel)
                if fut is not None and not fut.done():
                    fut.set_result(None)
            elif kind == "smessage":
                try:
                    await self.on_message(channel, msg["data"])
                except RedisError as exc:
                    log.warning("relay_failed", channel=channel, error=str(exc))

    async def _again(self) -> None:
        """Subscribe again on a fresh connection; retried at a steady pace while Redis is down."""
        while True:
            try:
                await self.pubsub.aclose()
                self.pubsub = self.client.pubsub()
                if self.channels:
                    await self.pubsub.ssubscribe(*self.channels)
                break
            except RedisError:
                await asyncio.sleep(0.5)  # a retry pace, not a synchronisation
        self.on_lost(set(self.channels))

    async def close(self, *, client: bool) -> None:
        if self.task is not None:
            self.task.cancel()
        await self.pubsub.aclose()
        if client:  # a cluster node's own client: its pool keeps the connection the subscription gave back
            await self.client.aclose()


class Channels:
    def __init__(self, blocking: Any, cluster: bool, on_message: OnMessage, on_lost: Callable[[set[str]], None]):
        self.blocking, self.cluster = blocking, cluster
        self.on_message, self.on_lost = on_message, on_lost
        self._conns: dict[str, _Conn] = {}
        self._where: dict[str, _Conn] = {}

    def _conn(self, channel: str) -> _Conn:
        name = self.blocking.get_node_from_key(channel).name if self.cluster else "redis"
        conn = self._conns.get(name)
        if conn is None:
            client = node_client(self.blocking, channel)[1] if self.cluster else self.blocking
            conn = self._conns[name] = _Conn(name, client, self.on_message, self.on_lost)
        return conn

    async def add(self, channel: str) -> None:
        conn = self._where[channel] = self._conn(channel)
        await conn.add(channel)

    async def remove(self, channel: str) -> None:
        conn = self._where.pop(channel, None)
        if conn is not None:
            await conn.remove(channel)

    async def close(self) -> None:
        for conn in self._conns.values():
            await conn.close(client=self.cluster)
