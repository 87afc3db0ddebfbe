"""One asyncio Redis API for a single server and for Redis Cluster over redis-py (8.2, probed by
tests/e2e/test_redis_cluster_probe.py). The same call works on both for what the session store uses: EVALSHA
(``register_script``) and FCALL on keys of one hash tag, XRANGE, XREAD BLOCK, SET NX PX, pipelines. What differs
or surprises is handled here:
- which client: a cluster is told by the server (``INFO cluster``), not by the URL;
- redis-py's cluster client retries a failed call 10 times, refreshing its slot map between: a node that stops
  answering holds a call for ~6 s whatever the socket timeout. ``connect`` turns retries off on both clients, so
  a call fails within its timeout and the caller's own retry policy decides (the next call finds the node back);
- XREAD BLOCK on a client whose socket timeout is shorter than the block fails with TimeoutError:
  ``connect(..., block_s=s)`` makes a client for reads that block up to ``s`` seconds (pub/sub reads are fine);
- ``SSUBSCRIBE`` returns before Redis confirms it, so a message published just after can be missed:
  ``sharded_subscribe`` returns once Redis confirmed every channel;
- in a cluster pipeline a script missing on a node fails with NoScriptError (outside pipelines, and in a
  single-server pipeline, redis-py loads it): ``load_scripts`` puts scripts on every primary first;
- a script's SPUBLISH must name a channel with its keys' hash tag: a cluster refuses another node's slot, once the
  script gets there, after its earlier writes (no rollback). FUNCTION LOAD reaches every primary.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, TypeAlias

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

Client: TypeAlias = Redis | RedisCluster
Message: TypeAlias = tuple[bytes, bytes]  # (channel, data) of one SPUBLISH


async def connect(url: str, *, call_s: float, block_s: float = 0.0, cluster: bool | None = None) -> Client:
    """A client for ``url``: a ``RedisCluster`` when the server runs in cluster mode, else a ``Redis``.

    ``call_s`` bounds each call (no retries); ``block_s`` is added for a client that runs blocking reads. With
    ``cluster=None`` the server is asked: redis's ConnectionError or TimeoutError while it is unreachable.
    """
    opts: dict[str, Any] = {"socket_timeout": call_s + block_s, "socket_connect_timeout": call_s}
    opts["retry"] = Retry(NoBackoff(), 0)
    if cluster is None:
        probe = Redis.from_url(url, **opts)
        try:
            cluster = int((await probe.info("cluster")).get("cluster_enabled", 0)) == 1
        finally:
            await probe.aclose()
    if cluster:
        return RedisCluster.from_url(url, **opts)
    return Redis.from_url(url, **opts)


async def load_scripts(client: Client, *scripts: AsyncScript) -> None:
    """SCRIPT LOAD on every primary (redis-py sends it to all of a cluster's): before scripts run in a pipeline,
    and again after a pipeline's NoScriptError (a restarted or promoted node starts with none)."""
    for script in scripts:
        await client.script_load(script.script)


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


class ShardedSubscription:
    """Sharded pub/sub (SSUBSCRIBE) on a single Redis or a cluster: in a cluster, one connection per node that
    owns a subscribed channel's slot, kept on the owner by redis-py when slots move."""

    def __init__(self, client: Client) -> None:
        self._pubsub = client.pubsub()
        self._early: deque[Message] = deque()  # messages read while waiting for a confirmation

    async def add(self, *channels: str | bytes, wait_s: float = 1.0) -> None:
        """SSUBSCRIBE, returning once Redis confirmed every channel: what is published afterwards arrives."""
        await self._pubsub.ssubscribe(*channels)
        await self._confirmed("ssubscribe", channels, wait_s)

    async def remove(self, *channels: str | bytes, wait_s: float = 1.0) -> None:
        """SUNSUBSCRIBE, returning once Redis confirmed it; a message read before that is still returned."""
        await self._pubsub.sunsubscribe(*channels)
        await self._confirmed("sunsubscribe", channels, wait_s)

    async def _confirmed(self, kind: str, channels: tuple[str | bytes, ...], wait_s: float) -> None:
        want = {_bytes(c) for c in channels}
        deadline = time.monotonic() + wait_s
        while want:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{kind.upper()} {sorted(want)} not confirmed within {wait_s} s")
            m = await self._pubsub.get_sharded_message(timeout=left) or {}
            if m.get("type") == kind:
                want.discard(_bytes(m["channel"]))
            elif m.get("type") == "smessage":
                self._early.append((_bytes(m["channel"]), _bytes(m["data"])))

    async def get(self, wait_s: float) -> Message | None:
        """The next message, or None once ``wait_s`` seconds passed without one."""
        if self._early:
            return self._early.popleft()
        deadline = time.monotonic() + wait_s
        while (left := deadline - time.monotonic()) > 0:
            m = await self._pubsub.get_sharded_message(timeout=left)
            if m is not None and m["type"] == "smessage":
                return _bytes(m["channel"]), _bytes(m["data"])
        return None

    async def aclose(self) -> None:
        await self._pubsub.aclose()


async def sharded_subscribe(client: Client, *channels: str | bytes, wait_s: float = 1.0) -> ShardedSubscription:
    """A subscription to ``channels``, confirmed by Redis, on a single server or a cluster alike."""
    sub = ShardedSubscription(client)
    try:
        await sub.add(*channels, wait_s=wait_s)
    except BaseException:
        await sub.aclose()
        raise
    return sub
