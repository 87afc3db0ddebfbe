"""A real ``redis-server`` for tests, started on a free port with its own directory.

It runs as the issue asks a durable deployment to: ``appendonly yes`` and ``appendfsync always``, so a Redis
restart keeps every acknowledged write. Readiness is its own log line, never a timer.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisProc:
    dir: Path
    port: int = 0
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None
    _drainer: threading.Thread | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProc:
        """Start (or restart, on the same port and data) and return once it accepts connections."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for _ in range(5):  # the free port can be taken between the probe and the bind
            self.port = self.port or free_port()
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                 "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--logfile", "",
                 "--protected-mode", "no", *self.extra],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            assert self.proc.stdout is not None
            tail = []
            for line in self.proc.stdout:
                tail.append(line)
                if "Ready to accept connections" in line:
                    self._drain()
                    return self
            self.proc.wait()
            self.proc.stdout.close()
            if not any("Address already in use" in t for t in tail):
                raise RuntimeError("redis-server did not start: " + "".join(tail[-5:]))
            self.port = 0
        raise RuntimeError("redis-server found no free port")

    def _drain(self) -> None:
        """Keep reading its log so a full pipe never blocks it."""
        proc = self.proc
        assert proc is not None and proc.stdout is not None

        def drain(out: IO[str]) -> None:
            with out:  # closed at its end (the process exited), so no file is left to the collector
                for _ in out:
                    pass

        self._drainer = threading.Thread(target=drain, args=(proc.stdout,), daemon=True)
        self._drainer.start()

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill() if kill else self.proc.terminate()
            self.proc.wait()
        if self._drainer is not None:  # it closes the log at its end; closing it under the thread would raise there
            self._drainer.join()
            self._drainer = None
        elif self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
