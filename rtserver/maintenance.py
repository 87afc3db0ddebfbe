"""Background upkeep of a node's sessions, on the event loop: idle sessions leave memory and old frame logs are
dropped (``SessionManager.sweep``), sessions past ``session_ttl`` are deleted, and the stored files are scrubbed
for damage. Each runs at its own period; none blocks a turn (the store does its file work in threads)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from .sessions.manager import SessionManager
from .sessions.store import Store
from .settings import Settings

log = structlog.get_logger("rtserver.maintenance")

EXPIRE_EVERY = 3600.0  # seconds between expiry passes (a TTL is days; an hour late is nothing)


class Maintenance:
    def __init__(self, manager: SessionManager, store: Store, settings: Settings) -> None:
        self.manager, self.store, self.settings = manager, store, settings
        self._tasks: list[asyncio.Task[None]] = []

    def sweep_every(self) -> float:
        s = self.settings
        return max(0.05, min(s.session_idle_s, s.frame_log_ttl, 60.0) / 2)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        s = self.settings
        self._tasks.append(loop.create_task(self._every(self.sweep_every(), self._sweep), name="sweep"))
        if s.session_ttl > 0:
            self._tasks.append(loop.create_task(self._every(EXPIRE_EVERY, self._expire, now=True), name="expire"))
        if s.journal_scrub_s > 0:
            self._tasks.append(loop.create_task(self._every(s.journal_scrub_s, self._scrub), name="scrub"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _every(self, period: float, job: Callable[[], Awaitable[None]], *, now: bool = False) -> None:
        if not now:
            await asyncio.sleep(period)
        while True:
            try:
                await job()
            except Exception:  # upkeep must not die: the next pass tries again
                log.exception("maintenance_failed", job=getattr(job, "__name__", str(job)))
            await asyncio.sleep(period)

    async def _sweep(self) -> None:
        if out := self.manager.sweep():
            log.info("sessions_paged_out", sessions=out, resident=len(self.manager.sessions))

    async def _expire(self) -> None:
        await self.manager.expire()

    async def _scrub(self) -> None:
        damaged = await self.store.scrub()
        log.info("journal_scrubbed", damaged_records=damaged)
