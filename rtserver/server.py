"""The server: WebSocket endpoint at ``/`` plus ``/healthz``, ``/readyz`` and ``/metrics`` on the same port.

Start-up order: settings -> engines (model load) -> store (opened, not read: sessions load on demand) -> listen.
SIGTERM/SIGINT drain: stop taking new turns, let running ones finish (up to ``drain_timeout``), close clients
with 1012 so they reconnect and resume, write every session's frame log to the store, exit.
"""

from __future__ import annotations

import asyncio
import gc
import http
import os
import signal
import socket
import ssl
import time
import weakref
from pathlib import Path
from typing import Any

import structlog
from rtprotocol import errors as E
from rtprotocol import frames as F
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import NegotiationError
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from . import __version__, tracing
from .audit.events import SecurityEvents
from .audit.log import AuditLog
from .auth import setup as auth_setup
from .connection import CLOSE_TIMEOUT, Connection
from .demo import DemoPage
from .engine.base import Engine
from .engine.scripted import ScriptedEngine
from .filters import build_pipeline
from .filters.base import Client
from .fleet import Fleet
from .fleet.clients import sync_client
from .limits.sessions import UserSessions
from .maintenance import Maintenance
from .metrics import Metrics
from .protection import Protection, ProtectionCollector
from .sessions.handle import Sessions
from .sessions.local import LocalStore
from .sessions.manager import SessionConfig, SessionManager
from .sessions.quota import DirQuota
from .sessions.store import Store
from .sessions.turns import Turns
from .settings import Settings
from .story.registry import CardRegistry

log = structlog.get_logger("rtserver")


def make_engines(settings: Settings) -> dict[str, Engine]:
    if settings.engine == "scripted":
        return {
            name: ScriptedEngine(
                settings.scripted_rate, settings.scripted_words, settings.scripted_stamp, capacity=settings.slots
            )
            for name in settings.model_paths()
        }
    from .engine.llama import EngineConfig, LlamaEngine

    def config(name: str) -> EngineConfig:
        return EngineConfig(
            name=name,
            n_ctx=settings.n_ctx,
            slots=settings.slots,
            n_threads=settings.threads or None,
            n_batch=max(256, settings.prefill_chunk + settings.slots),
            prefill_chunk=settings.prefill_chunk,
            host_budget_mb=settings.kv_host_mb,
            flash_attn=settings.flash_attn,
            cache_types=(settings.cache_type_k, settings.cache_type_v),
            decode_ahead=settings.decode_ahead,
            save_ahead=settings.save_ahead,
            restore_ahead=settings.restore_ahead,
            prefill_first=settings.prefill_first,
            time_slice=settings.time_slice,
        )

    return {name: LlamaEngine(path, config(name)) for name, path in settings.model_paths().items()}


class Server:
    def __init__(self, settings: Settings, *, engines: dict[str, Engine] | None = None) -> None:
        self.settings = s = settings
        self.node_id = s.node_id or f"{socket.gethostname()}-{os.getpid()}"
        self.metrics = Metrics()
        self.engines = engines if engines is not None else make_engines(s)  # given: in-process tests
        self.metrics.watch_engines(lambda: {name: e.stats() for name, e in self.engines.items()})
        self.fleet: Fleet | None = None
        self.store: Store
        if s.redis_url:
            self.fleet = Fleet(s, self.node_id)
            self.store = self.fleet.store
        else:
            self.store = LocalStore(Path(s.data_dir), self.node_id, fsync=s.fsync, session_ttl=s.session_ttl)
        cluster = self.fleet.cluster if self.fleet is not None else False
        self.protection = Protection(
            s, auth_setup(s.auth, s.host, Path(s.data_dir), s.token_secret), node=self.node_id, cluster=cluster
        )
        self.audit = AuditLog(Path(s.data_dir) / "audit", self.node_id, capacity=s.audit_buffer, fsync=s.fsync)
        if s.redis_url and s.audit:
            self.audit.redis = sync_client(s.redis_url, s.redis_timeout, self.fleet.cluster if self.fleet else None)
        if s.audit:
            self.protection.sinks.append(SecurityEvents(self.audit))
        self.pipeline = build_pipeline(
            s,
            self.engines,
            self.metrics,
            lambda: self.draining,
            auth=self.protection.auth,
            limiter=self.protection.limiter,
            report=self.protection.report,
            audit=self.audit if s.audit else None,
            tracer=tracing.tracer() if s.tracing else None,
            pressure=self.protection.memory,
            counts=self.protection.counts,
            cluster=cluster,
        )
        self.user_sessions = UserSessions(s.sessions_per_user, self.protection.counts)
        self.metrics.registry.register(ProtectionCollector(self.protection, self.audit))
        self._clients: weakref.WeakKeyDictionary[ServerConnection, Client] = weakref.WeakKeyDictionary()
        self.manager = SessionManager(
            self.store,
            SessionConfig(
                default_model="default",
                models=frozenset(self.engines),
                default_params=s.default_params(),
                resume_grace=s.resume_grace,
                max_text=s.max_text,
                frame_log=s.frame_log,
                frame_log_ttl=s.frame_log_ttl,
                session_idle_s=s.session_idle_s,
                max_resident=s.max_resident_sessions,
            ),
            quota=self._quota(),
        )
        self.turns = Turns(self.manager, self.pipeline)
        self.cards = CardRegistry(Path(s.data_dir) / "cards")
        self.sessions = (
            Sessions(self.manager, self.turns, self.cards)
            if self.fleet is None
            else self.fleet.bind(self.manager, self.turns, self.cards)
        )
        self.maintenance = Maintenance(self.manager, self.store, s)
        self.metrics.watch_store(self.store, self.manager)
        if self.fleet is not None:
            self.metrics.watch_fleet(self.fleet)
        self.connections: set[Connection] = set()
        self.frames_closed = 0  # frames sent by connections already gone; live ones are summed on scrape
        self.metrics.watch_frames(lambda: self.frames_closed + sum(c.sent for c in self.connections))
        self.demo = DemoPage() if s.demo else None  # --demo: the demo page at / (plain GETs only)
        self.ready = False
        self.draining = False
        self._stop = asyncio.Event()

    def _quota(self) -> DirQuota | None:
        """Embedded, the per-user index of stored sessions lives beside them; across nodes the fleet sets it."""
        store = self.store
        if not isinstance(store, LocalStore):
            return None
        return DirQuota(Path(self.settings.data_dir) / "users", lambda sid: store.path(sid).exists())

    def welcome(self) -> F.Frame:
        s = self.settings
        limits = {
            "max_frame_bytes": s.max_frame_bytes,
            "max_text": s.max_text,
            "send_queue": s.send_queue,
            "frame_log": s.frame_log,
            "frame_log_ttl_s": s.frame_log_ttl,
            "resume_grace_s": s.resume_grace,
            "sessions_per_connection": s.max_sessions_per_connection,
            "bad_frames_burst": s.bad_frames_burst,
            "bad_frames_per_s": s.bad_frames_per_s,
            "max_card_bytes": s.max_card_bytes,
        }
        return F.welcome(f"rtserver/{__version__}", self.node_id, limits, s.heartbeat, sorted(self.engines))

    async def erased(self, sid: str) -> None:
        """``session.delete``: the session is gone from the store; its audit bodies go too."""
        if self.settings.audit:
            await self.audit.erase(sids={sid})

    # --- HTTP on the same port --------------------------------------------------------------------------------

    def _http(self, conn: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            return conn.respond(http.HTTPStatus.OK, "ok\n")
        if path in ("/readyz", "/metrics") and not self.protection.http_allowed(request.headers.get("authorization")):
            return conn.respond(http.HTTPStatus.UNAUTHORIZED, "this endpoint needs 'Authorization: Bearer <API key>'\n")
        if path == "/readyz":
            return self._readyz(conn)
        if path == "/metrics":
            body = self.metrics.render()
            headers = Headers(
                [
                    ("Content-Type", "text/plain; version=0.0.4; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                    ("Connection", "close"),
                ]
            )
            return Response(200, "OK", headers, body)
        fields = {k.lower(): v for k, v in request.headers.raw_items()}
        if self.demo is not None and (page := self.demo.response(path, fields)) is not None:
            return page
        client = Client(peer=str(conn.remote_address[0]) if conn.remote_address else "")
        for f in self.pipeline.connection:
            refusal = f.handshake(path, fields, client)
            if refusal is not None:
                return conn.respond(http.HTTPStatus(refusal.status), refusal.body)
        self._clients[conn] = client
        return None

    def _readyz(self, conn: ServerConnection) -> Response:
        if not self.ready or self.draining:
            return conn.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "not ready\n")
        if self.store.degraded and self.fleet is not None:
            return conn.respond(
                http.HTTPStatus.SERVICE_UNAVAILABLE,
                "degraded: Redis is unreachable; this node's sessions go on, their turns journalled locally under "
                f"{self.settings.data_dir}/redis-pending until Redis returns\n",
            )
        if self.audit.full:
            return conn.respond(
                http.HTTPStatus.SERVICE_UNAVAILABLE,
                "degraded: the audit log is behind (a slow disk); new turns get busy until it catches up\n",
            )
        if self.store.degraded:
            return conn.respond(
                http.HTTPStatus.SERVICE_UNAVAILABLE,
                f"degraded: writes to {self.settings.data_dir} are failing (disk full?); turns end with "
                "store_failed until they succeed again\n",
            )
        return conn.respond(http.HTTPStatus.OK, "ready\n")

    @staticmethod
    def _subprotocol(conn: ServerConnection, offered: Any) -> Subprotocol | None:
        for p in offered:
            if p in F.SUBPROTOCOLS:
                return Subprotocol(p)
        if offered:
            raise NegotiationError(f"unsupported subprotocols {list(offered)}; use one of {list(F.SUBPROTOCOLS)}")
        return None  # nothing offered: msgpack, the default

    async def _handle(self, ws: ServerConnection) -> None:
        conn = Connection(ws, self, self._clients.pop(ws, None))
        self.connections.add(conn)
        self.metrics.connections.inc()
        started = time.monotonic()
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)
            self.metrics.connections.dec()
            self.frames_closed += conn.sent
            log.info(
                "connection",
                peer=str(ws.remote_address[0]) if ws.remote_address else None,
                subprotocol=conn.codec.subprotocol,
                frames_in=conn.frames_in,
                seconds=round(time.monotonic() - started, 3),
                close_code=ws.close_code,
            )

    # --- lifecycle --------------------------------------------------------------------------------------------

    async def run(self) -> None:
        s = self.settings
        t0 = time.perf_counter()
        for name, engine in self.engines.items():
            log.info("loading_model", model=name, path=str(s.model_paths()[name]), engine=s.engine)
            await engine.start()
        log.info("models_ready", seconds=round(time.perf_counter() - t0, 2))
        await self.store.open()
        if self.fleet is not None:
            await self.fleet.start()
        if s.audit:
            await self.audit.start()
        log.info(
            "store_open",
            store="redis" if self.fleet else "local",
            data_dir=None if self.fleet else s.data_dir,
            filters=list(self.pipeline.names),
        )
        # What exists now (modules, the model) lives as long as the process: keep it out of the collector's
        # full passes, which otherwise stall the loop for tens of ms on a large heap.
        gc.collect()
        gc.freeze()
        tls = None
        if s.tls_cert:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(s.tls_cert, s.tls_key)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        self.maintenance.start()
        await self.protection.start(lambda: [c.client for c in self.connections])
        async with serve(
            self._handle,
            s.host,
            s.port,
            process_request=self._http,
            select_subprotocol=self._subprotocol,
            subprotocols=[Subprotocol(p) for p in F.SUBPROTOCOLS],
            compression=None,
            max_size=max(s.max_frame_bytes, s.max_card_bytes),  # (frames other than card.put: Connection)
            ping_interval=s.heartbeat or None,
            ping_timeout=s.heartbeat or None,
            close_timeout=CLOSE_TIMEOUT,
            ssl=tls,
            server_header=f"rtserver/{__version__}",
        ) as server:
            port = server.sockets[0].getsockname()[1] if server.sockets else s.port
            self.ready = True
            scheme = "wss" if tls else "ws"
            log.info("listening", url=f"{scheme}://{s.host}:{port}/", node=self.node_id, version=__version__)
            await self._stop.wait()
            await self._drain(server)
        await self.maintenance.stop()
        await self.protection.stop()
        await self.manager.park_all()
        if self.fleet is not None:
            await self.fleet.stop()
        if s.audit:
            await self.audit.close()  # every record still waiting is written before the process ends
            if self.audit.redis is not None:
                self.audit.redis.close()
        await self.store.close()
        await self.pipeline.close()
        for engine in self.engines.values():
            await engine.close()
        log.info("stopped")

    async def _drain(self, server: Any) -> None:
        self.draining = True
        log.info(
            "draining",
            turns=sum(1 for x in self.manager.sessions.values() if x.running),
            connections=len(self.connections),
        )
        await self.turns.drain(self.settings.drain_timeout)
        if self.fleet is not None:  # hand every session back first, so the clients' resumes elsewhere recover
            await self.manager.park_all()
        for conn in list(self.connections):
            conn.close_after_flush(E.CLOSE_RESTART, "server restart: reconnect and resume")
        server.close(close_connections=False)
        await server.wait_closed()
