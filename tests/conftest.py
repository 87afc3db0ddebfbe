"""Shared fixtures. Real-socket tests start ``rtserver serve`` as a subprocess on a free port (``--port 0``) and
learn the URL from its ``listening`` log line, so no test waits on a timer for a server to come up."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    """Skip on a laptop without the service; in CI a missing service is a failure."""
    if not condition:
        if IN_CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)


@dataclass
class ServerProc:
    """A running ``rtserver serve``. Its log (stderr, JSON lines) is read by a thread as it comes, so the server
    never blocks on a full pipe however much it logs between a test's looks at it."""

    args: list[str]
    data_dir: Path
    env: dict[str, str]
    proc: subprocess.Popen[str] | None = None
    url: str = ""
    port: int = 0
    log: list[dict[str, object]] = field(default_factory=list)
    _seen: threading.Condition = field(default_factory=threading.Condition)
    _reader: threading.Thread | None = None
    _ended: bool = False  # the log reached its end: the server exited

    def start(self) -> ServerProc:
        port_args = ["--port", str(self.port)] if self.port else ["--port", "0"]
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rtserver",
                "serve",
                "--host",
                "127.0.0.1",
                *port_args,
                "--data-dir",
                str(self.data_dir),
                *self.args,
            ],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **self.env},
        )
        self._ended, since = False, len(self.log)
        self._reader = threading.Thread(target=self._read_log, args=(self.proc,), name="rtserver-log", daemon=True)
        self._reader.start()
        try:
            event = self._wait("listening", since)  # (this process's: a restarted server's log goes on)
        except AssertionError:
            raise RuntimeError(f"rtserver exited before listening (rc={self.proc.wait()}): {self.log[-5:]}") from None
        self.url = str(event["url"])
        self.port = int(self.url.rsplit(":", 1)[1].strip("/"))
        return self

    def _read_log(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"raw": line.rstrip()}
            with self._seen:
                self.log.append(event)
                self._seen.notify_all()
        with self._seen:
            self._ended = True
            self._seen.notify_all()

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_event(self, name: str, **match: object) -> dict[str, object]:
        """The first event ``name`` with these fields the server has logged, waiting for it if need be (blocking:
        use to_thread)."""
        return self._wait(name, 0, **match)

    def _wait(self, name: str, looked: int, **match: object) -> dict[str, object]:
        with self._seen:
            while True:
                for event in self.log[looked:]:
                    if event.get("event") == name and all(event.get(k) == v for k, v in match.items()):
                        return event
                looked = len(self.log)
                if self._ended:
                    raise AssertionError(f"server exited without logging {name} {match}")
                self._seen.wait()

    def _log_ended(self) -> None:
        if self._reader is not None:
            self._reader.join()
            self._reader = None

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=60)
        self._log_ended()
        return rc

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._log_ended()
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[object]:
    servers: list[ServerProc] = []

    def start(*args: str, data_dir: Path | None = None, env: dict[str, str] | None = None, port: int = 0) -> ServerProc:
        s = ServerProc(list(args), data_dir or tmp_path / "data", env or {}, port=port)
        servers.append(s)
        return s.start()

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(autouse=True)
async def _close_raw_connections() -> AsyncIterator[None]:
    from .helpers import Raw

    yield
    for raw in Raw.opened:
        raw.ws.transport.abort()  # some tests leave a client that does not read: no closing handshake
        await raw.ws.wait_closed()
    Raw.opened.clear()


SCRIPTED = ("--engine", "scripted")


@pytest.fixture
def scripted_server(start_server) -> ServerProc:  # type: ignore[no-untyped-def]
    return start_server(*SCRIPTED, "--scripted-rate", "200")  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def bundled_model() -> Path:
    require(importlib.util.find_spec("llama_cpp") is not None, "llama-cpp-python is not installed (scripts/install)")
    path = ROOT / "rtserver" / "models" / "rtserver-tiny-q4_0.gguf"
    require(path.is_file(), f"the bundled model {path} is missing")
    return path


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[object]:
    """A real ``redis-server`` on a free port (appendonly, fsync always), stopped after the test."""
    from .redisproc import RedisProc

    require(RedisProc.available(), "redis-server is not installed (apt-get install redis-server)")
    r = RedisProc(tmp_path / "redis").start()
    yield r
    r.stop()


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[object]:
    """A local 3-master Redis Cluster (appendonly, fsync always, free ports), stopped after the test."""
    from .rediscluster import RedisClusterProc

    require(RedisClusterProc.available(), "redis-server or redis-cli is not installed (apt-get install redis-server)")
    c = RedisClusterProc(tmp_path / "redis-cluster")
    try:
        yield c.start()
    finally:
        c.stop()
