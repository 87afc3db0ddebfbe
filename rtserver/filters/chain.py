"""``build_pipeline``: the one place that decides which filters run, and in what order. It reads top to bottom
in the order they run.

Connection chain, at the handshake (first refusal wins), when the socket opens, on each frame before it is
carried out, and when it closes:
    trace       (tracing on) when the frame arrived, and the client's traceparent
    upgrade     a plain HTTP request is told this is a WebSocket endpoint (426)
    draining    a draining node refuses new connections (503), and new sessions and turns (shutting_down)
    client_ip   the client's address (X-Forwarded-For only from trusted proxies): every limit below keys on it
    origin      a browser page from an origin not on the allow-list (403)
    auth        the credential (Authorization header, or hello.token): 401/403, or 4001/4003 after hello
    limits      connections and not-yet-hello connections per IP (429 / 1013); frames per minute per user and
                per IP (rate_limited): after auth, so the user is known
    shed        a new session gets busy while the admission sheds (queue full, memory short)
Turn chain, admission phase, before ``turn.start`` (a refusal is an ``error`` frame; nothing started):
    trace       (tracing on) the turn's span starts, continuing the client's traceparent
    audit       busy while the audit log's backlog is full (a slow disk sheds turns; no record is dropped)
    grammar     a grammar (or a schema's) the engine cannot use: bad_field
    tokens      the turn's max_tokens charged to its user's tokens per minute (rate_limited)
    admission   busy at once when the engine's queue is too long, or memory is short (lowest priority first)
Turn chain, streaming phase, around the running turn (outermost first):
    trace       (tracing on) the phases' spans, made from the turn's timings when it ends
    errors      anything raised becomes Finish("error"); the stream always ends with one Finish
    audit       one record per turn, appended when it ends (written later, off the event loop)
    metrics     time to first token, gaps, turns by reason
    tokens      gives back the reserved tokens the turn did not generate
    admission   gives the turn's place back when it ends
    cache       an identical deterministic turn's reply, from this node, Redis, or one in flight (filters/cache.py)
    engine      the model chosen by the session
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..admission import Admission, no_pressure
from ..audit.log import AuditLog
from ..auth.authenticator import Authenticator
from ..cache import LocalCache, SharedCache
from ..engine.base import Engine, Event
from ..limits import Gcra, Limiter
from ..limits.counts import SharedCounts
from ..metrics import Metrics
from ..settings import Settings
from .admission import AdmissionFilter
from .audit import AuditFilter
from .auth import AuthFilter
from .base import AdmitFilter, ConnectionFilter, Filter, Handler, Report, TurnContext, no_report
from .cache import CacheFilter, CacheMetrics
from .clientip import ClientIpFilter, parse_proxies
from .draining import DrainingFilter
from .errors import errors_filter
from .grammar import GrammarFilter
from .limits import ConnectionLimits, LimitsFilter
from .metrics import MetricsFilter
from .origin import OriginFilter, parse_origins
from .shed import ShedFilter
from .tokens import TokensFilter
from .trace import TraceConnectionFilter, TraceFilter
from .upgrade import UpgradeFilter


@dataclass(frozen=True)
class Pipeline:
    connection: tuple[ConnectionFilter, ...]
    admit: tuple[AdmitFilter, ...]
    turn: Handler
    names: tuple[str, ...]  # every filter in the order it runs, for the start-up log and the tests
    closers: tuple[Callable[[], Awaitable[None]], ...] = ()  # at shutdown: what the filters hold (Redis clients)

    async def close(self) -> None:
        for close in self.closers:
            await close()

    async def admit_turn(self, ctx: TurnContext) -> None:
        """Run the admission phase; if a filter refuses, those before it are undone and the refusal raised.
        A filter answers at once, or with an awaitable when its decision needs I/O (a shared limit in Redis)."""
        done: list[AdmitFilter] = []
        try:
            for f in self.admit:
                pending = f.admit(ctx)
                if pending is not None:
                    await pending
                done.append(f)
        except BaseException:
            for f in reversed(done):
                f.undo(ctx)
            raise

    def undo_admit(self, ctx: TurnContext) -> None:
        """The turn was admitted but never ran (its start could not be made durable)."""
        for f in reversed(self.admit):
            f.undo(ctx)


def _wrap(filt: Filter, inner: Handler) -> Handler:
    def handle(ctx: TurnContext) -> AsyncIterator[Event]:
        return filt(ctx, inner)

    return handle


def engine_handler(engines: dict[str, Engine]) -> Handler:
    def handle(ctx: TurnContext) -> AsyncIterator[Event]:
        return engines[ctx.model].generate(ctx.request)

    return handle


def model_ids(settings: Settings, engines: dict[str, Engine]) -> dict[str, str]:
    """What identifies each model's replies across nodes: the engine kind, the model file's name and size (the
    scripted engine's words too). Cheap to compute; a model replaced by a same-sized file needs a cache flush."""
    paths = settings.model_paths()
    ids = {}
    for name, engine in engines.items():
        path = paths.get(name)
        size = path.stat().st_size if path is not None and path.is_file() else -1
        extra = f":{settings.scripted_words}" if engine.name != "llama" else ""
        ids[name] = f"{engine.name}:{path.name if path else name}:{size}{extra}"
    return ids


def cache_filter(settings: Settings, engines: dict[str, Engine], metrics: Metrics, cluster: bool) -> CacheFilter:
    s = settings
    shared = (
        SharedCache.connect(s.redis_url, timeout=s.redis_timeout, ttl=s.cache_ttl, wait=s.cache_wait, cluster=cluster)
        if s.redis_url and s.cache_entries > 0
        else None
    )
    local = LocalCache(s.cache_entries, s.cache_ttl)
    return CacheFilter(model_ids(s, engines), local, shared, CacheMetrics(metrics.registry, shared), s.cache_pace)


def build_pipeline(
    settings: Settings,
    engines: dict[str, Engine],
    metrics: Metrics,
    draining: Callable[[], bool],
    *,
    auth: Authenticator | None = None,
    limiter: Limiter | None = None,
    report: Report = no_report,
    audit: AuditLog | None = None,
    tracer: Any = None,
    pressure: Callable[[], float] = no_pressure,
    counts: SharedCounts | None = None,
    cluster: bool = False,
) -> Pipeline:
    s = settings
    per_model = {
        name: Admission(e.capacity, s.max_queued_turns, s.max_queue_wait, pressure=pressure)
        for name, e in engines.items()
    }
    admission = AdmissionFilter(per_model)
    limiter = limiter or Limiter(Gcra())
    tokens = TokensFilter(s.tokens_per_min, limiter, report)
    connection: list[tuple[str, ConnectionFilter]] = [
        ("upgrade", UpgradeFilter()),
        ("draining", DrainingFilter(draining)),
        ("client_ip", ClientIpFilter(parse_proxies(s.trusted_proxies))),
        ("origin", OriginFilter(parse_origins(s.allowed_origins), report)),
    ]
    if auth is not None:
        connection.append(("auth", AuthFilter(auth, report)))
    limits = ConnectionLimits(s.connections_per_ip, s.pending_per_ip, s.frames_per_min, s.frames_per_min_ip)
    connection.append(("limits", LimitsFilter(limits, limiter, report, counts)))
    connection.append(("shed", ShedFilter(per_model)))
    audited = [("audit", AuditFilter(audit, s.audit_policy))] if audit is not None else []
    traced = [("trace", TraceFilter(tracer))] if tracer is not None else []
    if tracer is not None:
        connection.insert(0, ("trace", TraceConnectionFilter()))
    admit: list[tuple[str, AdmitFilter]] = [
        *traced,
        *audited,
        ("grammar", GrammarFilter(lambda model, grammar: engines[model].grammar_error(grammar))),
        ("tokens", tokens),
        ("admission", admission),
    ]
    cache = cache_filter(settings, engines, metrics, cluster)
    streaming: list[tuple[str, Filter]] = [  # outermost first
        *traced,
        ("errors", errors_filter),
        *audited,
        ("metrics", MetricsFilter(metrics)),
        ("tokens", tokens),
        ("admission", admission),
        ("cache", cache),
    ]
    handler = engine_handler(engines)
    for _, filt in reversed(streaming):
        handler = _wrap(filt, handler)
    names = tuple(
        [f"connection:{n}" for n, _ in connection]
        + [f"admit:{n}" for n, _ in admit]
        + [f"turn:{n}" for n, _ in streaming]
        + ["turn:engine"]
    )
    return Pipeline(tuple(f for _, f in connection), tuple(f for _, f in admit), handler, names, (cache.close,))
