"""The in-process tier: the real ``Server`` on the test's own event loop, over a real WebSocket on 127.0.0.1
(port 0, learned from the server's ``listening`` log event), with a ``SteppedEngine`` the test steps by hand.

A test decides when each token is produced, so "a turn is still running" holds because the test has not
stepped it, and what the test asserts is the engine's record of what happened in which order, not durations.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog

from rtserver.engine.scripted import SteppedEngine
from rtserver.server import Server
from rtserver.settings import Settings

from ..helpers import HANG


class LogWatch:
    """A structlog processor that keeps every event the server logs and wakes whoever waits for one."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._waiters: list[asyncio.Future[None]] = []

    def __call__(self, logger: object, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        self.events.append(dict(event_dict))
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()
        return event_dict

    async def wait(self, name: str, since: int = 0, **match: Any) -> dict[str, Any]:
        """The first event ``name`` with these fields logged from index ``since`` on, waiting for it if need be."""
        looked = since
        async with asyncio.timeout(HANG):  # a bound against hangs, never a synchronisation
            while True:
                for event in self.events[looked:]:
                    if event.get("event") == name and all(event.get(k) == v for k, v in match.items()):
                        return event
                looked = len(self.events)
                fut = asyncio.get_running_loop().create_future()
                self._waiters.append(fut)
                await fut


@contextmanager
def watching_logs() -> Iterator[LogWatch]:
    """Put a LogWatch in front of structlog's processors (in place, as structlog.testing.capture_logs does, so
    loggers already bound see it too), and take it out again."""
    watch = LogWatch()
    processors = structlog.get_config()["processors"]
    processors.insert(0, watch)
    structlog.configure(processors=processors)
    try:
        yield watch
    finally:
        processors.remove(watch)
        structlog.configure(processors=processors)


@dataclass
class Running:
    server: Server
    engine: SteppedEngine
    logs: LogWatch
    url: str
    task: asyncio.Task[None]

    @property
    def http(self) -> str:
        return self.url.replace("ws://", "http://").rstrip("/")

    async def stop(self) -> None:
        """Stop as SIGTERM does (drain, close clients with 1012), letting any turn still held run to its end."""
        self.engine.run_freely()
        self.server._stop.set()  # what the server's SIGTERM handler does
        async with asyncio.timeout(HANG):
            await self.task


Start = Callable[..., Awaitable[Running]]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Start]:
    """``await serve(**settings)`` starts a Server in this loop with a fresh SteppedEngine (``engine=`` to give
    one) and returns once it listens."""
    started: list[Running] = []
    with watching_logs() as logs:

        async def start(engine: SteppedEngine | None = None, **settings: Any) -> Running:
            s = Settings(**{"engine": "scripted", "port": 0, "data_dir": str(tmp_path / "data"), **settings})
            engine = engine or SteppedEngine(capacity=s.slots)
            server = Server(s, engines={name: engine for name in s.model_paths()})
            since = len(logs.events)
            task = asyncio.create_task(server.run(), name="rtserver")
            listening = asyncio.ensure_future(logs.wait("listening", since))
            await asyncio.wait({task, listening}, return_when=asyncio.FIRST_COMPLETED)
            if not listening.done():
                listening.cancel()
                task.result()  # raises what stopped the server before it listened
            running = Running(server, engine, logs, str(listening.result()["url"]), task)
            started.append(running)
            return running

        try:
            yield start
        finally:
            for running in started:
                if not running.task.done():
                    await running.stop()
            gc.unfreeze()  # Server.run froze what existed at start-up, this test's objects among them
