"""What the protection filters share for the life of a server: the authenticator, the rate limiter (in process,
or in Redis with ``redis_url``), the security-event sink, and the watch that closes a revoked key's live
connections within a second."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter as CounterType
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from rtprotocol import errors as E

from .audit.log import AuditLog
from .auth import Authenticator
from .filters.base import Client, Report
from .limits import Gcra, Limiter, SharedLimiter
from .limits.counts import SharedCounts
from .memory import MemoryGauge
from .settings import Settings

log = structlog.get_logger("rtserver.protection")


class Protection:
    def __init__(
        self, settings: Settings, auth: Authenticator, *, node: str = "", redis: Any = None, cluster: bool = False
    ) -> None:
        self.settings, self.auth = settings, auth
        local = Gcra()
        shared, self.counts = None, None
        if settings.redis_url:
            redis = redis or redis_for_limits(settings.redis_url, settings.redis_timeout, cluster=cluster)
            fail_open = settings.limits_fail == "open"
            shared = SharedLimiter(redis, local, timeout=settings.redis_timeout, fail_open=fail_open, cluster=cluster)
            self.counts = SharedCounts(redis, node, timeout=settings.redis_timeout, fail_open=fail_open)
        self.redis = redis
        self.limiter = Limiter(local, shared)
        self.sinks: list[Report] = []  # the audit log adds itself
        self.events: CounterType[str] = CounterType()  # security events by kind, for /metrics
        self.memory = MemoryGauge(settings.max_memory_mb)
        self._watch: asyncio.Task[None] | None = None

    def report(self, kind: str, client: Client, detail: str) -> None:
        """A security event: logged (auth failures and refusals are rare; a flood's limit hits are sampled by
        the audit log, not logged one by one) and handed to the sinks."""
        self.events[kind] += 1
        if kind != "rate_limited":
            user = client.principal.user if client.principal is not None else None
            log.info("security", kind=kind, ip=client.ip, user=user, detail=detail[:200])
        for sink in self.sinks:
            sink(kind, client, detail)

    def http_allowed(self, authorization: str | None) -> bool:
        """/metrics and /readyz: open unless ``protect_http``; then an API key is needed."""
        if not self.settings.protect_http:
            return True
        scheme, _, key = (authorization or "").partition(" ")
        try:
            return scheme.lower() == "bearer" and self.auth.check(key.strip()).kind == "key"
        except Exception:  # noqa: BLE001 - any refusal of the credential is a refusal of the request
            return False

    async def _shared_keys(self) -> set[str]:
        """With Redis: the keys every node shares (``rtserver keys ... --redis``), so a revocation reaches every
        node within a second. Redis down: the node goes on with the keys it has."""
        if self.redis is None:
            return set()
        try:
            async with asyncio.timeout(self.settings.redis_timeout):
                shared = await self.redis.hgetall(KEYS_HASH)
        except Exception:  # noqa: BLE001 - an outage: try again at the next look
            return set()
        return self.auth.keys.merge({k.decode(): orjson.loads(v) for k, v in shared.items()})

    async def start(self, clients: Callable[[], Iterable[Client]]) -> None:
        if self.counts is not None:
            await self.counts.heartbeat()  # live before the first connection is counted
        self._watch = asyncio.get_running_loop().create_task(self._revocations(clients))

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self.counts is not None:
            self.counts.close()
        if self.limiter.shared is not None:
            self.limiter.shared.close()
        if self.redis is not None:
            await self.redis.aclose()

    async def _revocations(self, clients: Callable[[], Iterable[Client]]) -> None:
        """Re-read the key file when it changes (checked every ``REVOKE_CHECK_S``) and close the connections of
        keys revoked since: a revocation takes effect within a second."""
        while True:
            await asyncio.sleep(REVOKE_CHECK_S)
            self.memory.sample()
            if self.counts is not None:
                await self.counts.heartbeat()
            try:
                revoked = self.auth.keys.load() | await self._shared_keys()
            except (OSError, ValueError) as exc:
                log.warning("keys_unreadable", error=str(exc))
                continue
            if not revoked:
                continue
            for c in list(clients()):
                if c.principal is not None and c.principal.key_id in revoked and c.close is not None:
                    self.report("key_revoked", c, c.principal.key_id)
                    c.close(E.CLOSE_FORBIDDEN, "this API key was revoked")


KEYS_HASH = "rt:keys"  # id -> the key's record (salted hash, never the key), written by `rtserver keys --redis`
REVOKE_CHECK_S = 0.25  # the key file's mtime is looked at this often; it is re-read only when it changed


def redis_for_limits(url: str, timeout: float, connections: int = 32, *, cluster: bool = False) -> Any:
    """A client whose pool waits (up to ``timeout``) for one of its connections: a burst of decisions queues
    on a few connections instead of failing for want of one (redis-py's plain pool raises at its limit). A
    cluster's client keeps its own pool per node, without retries (the limiter's policy decides)."""
    import redis.asyncio as aioredis

    if cluster:
        from .fleet.clients import client

        return client(url, timeout, cluster=True)

    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=connections, timeout=timeout, socket_timeout=timeout, socket_connect_timeout=timeout
    )
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes its connections


class ProtectionCollector(Collector):
    """Security events and the audit log's state, read on scrape."""

    def __init__(self, protection: Protection, audit: AuditLog) -> None:
        self.protection, self.audit = protection, audit

    def collect(self) -> Iterable[Any]:
        events = CounterMetricFamily("rtserver_security_events", "security events by kind", labels=["kind"])
        for kind, n in sorted(self.protection.events.items()):
            events.add_metric([kind], n)
        yield events
        a = self.audit
        yield GaugeMetricFamily("rtserver_audit_waiting", "audit records waiting for the disk", value=len(a.waiting))
        yield GaugeMetricFamily("rtserver_audit_degraded", "1 while turns are shed for the audit", value=int(a.full))
        yield CounterMetricFamily("rtserver_audit_records", "audit records written", value=a.written)
        yield CounterMetricFamily("rtserver_audit_not_copied", "audit batches not copied to Redis", value=a.not_copied)
