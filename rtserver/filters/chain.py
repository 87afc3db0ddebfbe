"""``build_pipeline``: the one place that decides which filters run, and in what order. It reads top to bottom
in the order they run.

Connection chain, at the handshake (first refusal wins) and on each frame before it is carried out:
    upgrade     a plain HTTP request is told this is a WebSocket endpoint (426)
    draining    a draining node refuses new connections (503), and new sessions and turns (shutting_down)
Turn chain, admission phase, before ``turn.start`` (a refusal is an ``error`` frame; nothing started):
    grammar     a grammar (or a schema's) the engine cannot use: bad_field
    admission   busy at once when the engine's queue is too long
Turn chain, streaming phase, around the running turn (outermost first):
    errors      anything raised becomes Finish("error"); the stream always ends with one Finish
    metrics     time to first token, gaps, turns by reason
    admission   gives the turn's place back when it ends
    cache       an identical deterministic turn's reply, from this node, Redis, or one in flight (filters/cache.py)
    engine      the model chosen by the session
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from ..admission import Admission
from ..cache import LocalCache, SharedCache
from ..engine.base import Engine, Event
from ..metrics import Metrics
from ..settings import Settings
from .admission import AdmissionFilter
from .base import AdmitFilter, ConnectionFilter, Filter, Handler, TurnContext
from .cache import CacheFilter, CacheMetrics
from .draining import DrainingFilter
from .errors import errors_filter
from .grammar import GrammarFilter
from .metrics import MetricsFilter
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

    def admit_turn(self, ctx: TurnContext) -> None:
        """Run the admission phase; if a filter refuses, those before it are undone and the refusal raised."""
        done: list[AdmitFilter] = []
        try:
            for f in self.admit:
                f.admit(ctx)
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


def cache_filter(settings: Settings, engines: dict[str, Engine], metrics: Metrics) -> CacheFilter:
    s = settings
    shared = (
        SharedCache.connect(s.redis_url, timeout=s.redis_timeout, ttl=s.cache_ttl, wait=s.cache_wait)
        if s.redis_url and s.cache_entries > 0
        else None
    )
    local = LocalCache(s.cache_entries, s.cache_ttl)
    return CacheFilter(model_ids(s, engines), local, shared, CacheMetrics(metrics.registry, shared), s.cache_pace)


def build_pipeline(
    settings: Settings, engines: dict[str, Engine], metrics: Metrics, draining: Callable[[], bool]
) -> Pipeline:
    admission = AdmissionFilter(
        {name: Admission(e.capacity, settings.max_queued_turns, settings.max_queue_wait) for name, e in engines.items()}
    )
    connection: list[tuple[str, ConnectionFilter]] = [
        ("upgrade", UpgradeFilter()),
        ("draining", DrainingFilter(draining)),
    ]
    admit: list[tuple[str, AdmitFilter]] = [
        ("grammar", GrammarFilter(lambda model, grammar: engines[model].grammar_error(grammar))),
        ("admission", admission),
    ]
    cache = cache_filter(settings, engines, metrics)
    streaming: list[tuple[str, Filter]] = [  # outermost first
        ("errors", errors_filter),
        ("metrics", MetricsFilter(metrics)),
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
