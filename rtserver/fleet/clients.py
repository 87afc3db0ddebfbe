"""Redis clients for the fleet: a single server or a Redis Cluster, told apart by asking the server once at
start-up (the same ``redis://`` URL works for both). A node that cannot reach Redis at start-up assumes a single
server, says so, and starts anyway (``redis_cluster = true`` settles it for a cluster that may be down then).
No call is retried inside redis-py: a call fails within its timeout and the fleet's own policy decides."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
import structlog
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = structlog.get_logger("rtserver.fleet")


def is_cluster(url: str, timeout: float) -> bool:
    try:
        probe = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            return int(probe.info("cluster").get("cluster_enabled", 0)) == 1
        finally:
            probe.close()
    except redis.RedisError as exc:
        log.warning("redis_unreachable_at_start", url=url.split("@")[-1], error=str(exc), assuming="single server")
        return False


def client(url: str, timeout: float | None, cluster: bool) -> Any:
    """``timeout`` None: for blocking reads (XREAD BLOCK) and subscriptions."""
    opts: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout or 5.0,
        "retry": Retry(NoBackoff(), 0),
    }
    if cluster:
        return RedisCluster.from_url(url, **opts)
    return aioredis.from_url(url, **opts)


def node_client(cluster: Any, channel: str) -> tuple[str, Any]:
    """For a subscription in a cluster: a plain connection to the primary that owns the channel's slot."""
    node = cluster.get_node_from_key(channel)
    return node.name, aioredis.Redis(host=node.host, port=node.port, socket_timeout=None, retry=Retry(NoBackoff(), 0))


def sync_client(url: str, timeout: float, cluster: bool | None = None) -> Any:
    """A blocking client (the audit writer's thread, the CLI): a cluster's when the server is one (asked when
    ``cluster`` is None)."""
    if cluster is None:
        cluster = is_cluster(url, timeout)
    opts: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if cluster:
        return redis.cluster.RedisCluster.from_url(url, **opts)
    return redis.Redis.from_url(url, **opts)
