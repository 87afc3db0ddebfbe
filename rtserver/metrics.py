"""Prometheus metrics, served at ``GET /metrics`` on the WebSocket port. Engine counters are read on scrape."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


GAUGES = {"waiting_turns", "parked_turns", "kv_host_bytes"}  # engine stats that are levels now, not running totals


class _EngineCollector(Collector):
    def __init__(self, stats: Callable[[], dict[str, dict[str, int]]]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Any]:
        fams: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for model, counters in self._stats().items():
            for key, value in counters.items():
                fam = fams.get(key)
                if fam is None:
                    kind = GaugeMetricFamily if key in GAUGES or key.startswith("peak_") else CounterMetricFamily
                    fam = fams[key] = kind(
                        f"rtserver_engine_{key}", f"engine {key.replace('_', ' ')}", labels=["model"]
                    )
                fam.add_metric([model], value)
        yield from fams.values()


class _FramesCollector(Collector):
    def __init__(self, count: Callable[[], int]) -> None:
        self._count = count

    def collect(self) -> Iterable[Any]:
        fam = CounterMetricFamily("rtserver_frames_sent", "frames sent to clients")
        fam.add_metric([], self._count())
        yield fam


class _StoreCollector(Collector):
    """Sessions and the store's health, read on scrape."""

    def __init__(self, store: Any, manager: Any) -> None:
        self._store, self._manager = store, manager

    def collect(self) -> Iterable[Any]:
        m, st = self._manager, self._store
        yield GaugeMetricFamily("rtserver_sessions", "sessions in this node's memory", value=len(m.sessions))
        yield CounterMetricFamily("rtserver_sessions_paged_in", "sessions loaded from the store", value=m.paged_in)
        yield CounterMetricFamily("rtserver_sessions_paged_out", "sessions moved out of memory", value=m.paged_out)
        yield GaugeMetricFamily("rtserver_store_degraded", "1 while store writes fail", value=int(st.degraded))
        yield CounterMetricFamily(
            "rtserver_journal_damaged_records", "damaged journal records found and skipped", value=st.damaged_records
        )


class _FleetCollector(Collector):
    """Across nodes (``--redis``), read on scrape."""

    def __init__(self, fleet: Any) -> None:
        self._f = fleet

    def collect(self) -> Iterable[Any]:
        f = self._f
        c = CounterMetricFamily
        yield c(
            "rtserver_fenced_writes", "writes refused: another node owns the session now", value=f.store.fenced_writes
        )
        yield c(
            "rtserver_frames_relayed", "frames relayed to this node's clients from other nodes", value=f.relay.relayed
        )
        yield c("rtserver_frames_filled", "relayed frames fetched from the stream after a gap", value=f.relay.filled)
        yield c("rtserver_requests_forwarded", "requests carried to a session's owner", value=f.rpc.forwarded)
        yield c("rtserver_requests_served", "requests carried out for clients on other nodes", value=f.rpc.served)
        yield c(
            "rtserver_frame_batches_failed", "frame batches Redis did not take", value=f.store.frames.failed_batches
        )
        pending = sum(len(v) for v in f.store.fallback.pending.values()) if f.store.fallback else 0
        yield GaugeMetricFamily("rtserver_writes_waiting_for_redis", "writes journalled locally", value=pending)
        stale = f.store.fallback.stale_turns if f.store.fallback else 0
        yield c("rtserver_stale_turns", "turns written back after another node took the session", value=stale)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.connections = Gauge("rtserver_connections", "open WebSocket connections", registry=r)
        self.turns = Counter("rtserver_turns", "turns ended, by finish reason", ["model", "reason"], registry=r)
        self.errors = Counter("rtserver_errors", "error frames sent, by code", ["code"], registry=r)
        self.ttft = Histogram(
            "rtserver_time_to_first_token_seconds", "turn start to first token", ["model"], buckets=_LATENCY, registry=r
        )
        self.gap = Histogram(
            "rtserver_inter_token_seconds", "gap between tokens of one turn", ["model"], buckets=_LATENCY, registry=r
        )

    def watch_frames(self, count: Callable[[], int]) -> None:
        """Frames sent are counted in plain ints on the hot path and read here on scrape."""
        self.registry.register(_FramesCollector(count))

    def watch_store(self, store: Any, manager: Any) -> None:
        self.registry.register(_StoreCollector(store, manager))

    def watch_fleet(self, fleet: Any) -> None:
        self.registry.register(_FleetCollector(fleet))

    def watch_engines(self, stats: Callable[[], dict[str, dict[str, int]]]) -> None:
        self.registry.register(_EngineCollector(stats))

    def turn_done(self, model: str, reason: str, ttft: float | None, gaps: list[float]) -> None:
        self.turns.labels(model, reason).inc()
        if ttft is not None:
            self.ttft.labels(model).observe(ttft)
        gap = self.gap.labels(model)
        for g in gaps:
            gap.observe(g)

    def render(self) -> bytes:
        return generate_latest(self.registry)
