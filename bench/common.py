"""Helpers shared by the benchmarks: percentiles, summaries, starting servers pinned to cores, JSON output."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def pct(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def summary(values: Sequence[float]) -> dict[str, Any]:
    r = _r
    return {
        "n": len(values),
        "p50": r(pct(values, 50)),
        "p90": r(pct(values, 90)),
        "p99": r(pct(values, 99)),
        "max": r(max(values) if values else None),
    }


def median(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return pct(vals, 50)


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "host": socket.gethostname(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cmd: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *cmd] if cpus else cmd


def start_rtserver(
    args: list[str], cpus: str | None, data_dir: Path, env: dict[str, str] | None = None, module: str = "rtserver"
) -> tuple[subprocess.Popen[str], str]:
    """Start `rtserver serve` (as ``python -m module serve``) and return it with its URL once it logs `listening`."""
    cmd = pinned([sys.executable, "-m", module, "serve", "--port", "0", "--data-dir", str(data_dir), *args], cpus)
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    assert proc.stderr is not None
    for line in proc.stderr:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("event") == "listening":
            # Keep draining stderr so the server never blocks on a full pipe.
            import threading

            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
            return proc, str(event["url"])
    raise RuntimeError(f"rtserver exited with {proc.wait()}")


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


def write_json(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=1))
    return path


def run_json(args: list[str], cpus: str | None) -> dict[str, Any]:
    """Run ``python ARGS`` (pinned) and parse the JSON of its last output line."""
    out = subprocess.run(pinned([sys.executable, *args], cpus), capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def start_bare(cpus: str | None, rate: float = 20.0) -> tuple[subprocess.Popen[str], str]:
    """Start bench/bare_server.py (the bare websockets baseline) and return it with its URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "bench.bare_server", "--port", str(port), "--rate", str(rate)]
    proc = subprocess.Popen(pinned(cmd, cpus), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()  # "listening"
    return proc, f"ws://127.0.0.1:{port}/"


class Conn:
    """A raw msgpack WebSocket client for benchmarks: every frame as it comes, nothing hidden."""

    def __init__(self, ws: Any) -> None:
        from rtprotocol import Codec

        self.ws, self.codec = ws, Codec("rt.v1.msgpack")

    @classmethod
    async def open(cls, url: str) -> Any:
        import websockets

        c = cls(await websockets.connect(url, subprotocols=["rt.v1.msgpack"], compression=None))  # type: ignore[list-item]
        await c.send({"t": "hello"})
        await c.recv()
        return c

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(self.codec.encode(frame))

    async def recv(self) -> dict[str, Any]:
        return self.codec.decode(await self.ws.recv())  # type: ignore[no-any-return]

    async def until(self, kind: str) -> dict[str, Any]:
        """The next frame of type ``kind``; an error frame stops the benchmark (it would measure nothing)."""
        while True:
            f = await self.recv()
            if f["t"] == kind:
                return f
            if f["t"] == "error":
                raise RuntimeError(f"error frame while waiting for {kind}: {f}")
