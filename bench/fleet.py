"""Three nodes and a Redis (issue 17): relay, Redis CPU per delta, resume on another node, failover.

Everything runs on this machine: ``redis-server`` (appendonly, fsync always), three ``rtserver serve`` nodes on
the scripted engine stamping each token with its ``time.monotonic()``, and this load generator.

- relay: each session has a client on its owner and one on another node; per delta, the delivery time (receipt
  minus stamp) of the remote client against the owner's client, and Redis's CPU (INFO cpu) per delta;
- resume: a fresh connection to another node than the owner resumes 5 frames back; time from connecting to the
  first missed frame, beside the same on the owner;
- failover: kill -9 of the owner, then the client's next say on another node; time from the kill to turn.start.

    python -m bench.fleet [--sessions 100] [--rate 20] [--seconds 20] [--resumes 200] [--failovers 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import websockets

from .common import Conn, start_rtserver, stop, summary, write_json

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.redisproc import RedisProc  # noqa: E402


def cpu_busy() -> tuple[int, int]:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)


def redis_cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


class Fleet:
    def __init__(self, tmp: Path, rate: float, stamp: bool = True, fsync: str = "always") -> None:
        self.tmp, self.rate, self.stamp = tmp, rate, stamp
        self.redis = RedisProc(tmp / "redis", extra=["--appendfsync", fsync]).start()
        self.nodes: list[tuple[subprocess.Popen[str], str]] = [self.start(i) for i in range(3)]

    def start(self, i: int) -> tuple[subprocess.Popen[str], str]:
        args = ["--engine", "scripted", "--scripted-rate", str(self.rate), "--scripted-words", "100000",
                "--slots", "512", "--redis", self.redis.url, "--node-id", f"n{i}"]  # fmt: skip
        env = {"RTSERVER_SCRIPTED_STAMP": "1" if self.stamp else "0"}
        # One load generator on one address opens hundreds of sockets at once: the per-address limits are off.
        env |= {f"RTSERVER_{k}": "0" for k in ("PENDING_PER_IP", "CONNECTIONS_PER_IP", "FRAMES_PER_MIN_IP")}
        return start_rtserver(args, None, self.tmp / f"d{i}", env)

    def close(self) -> None:
        for p, _ in self.nodes:
            stop(p)
        self.redis.stop()


async def relay(fl: Fleet, sessions: int, seconds: float, tokens: int) -> dict[str, Any]:
    urls = [u for _, u in fl.nodes]
    owner_lat: list[float] = []
    remote_lat: list[float] = []
    deltas = 0

    async def setup(i: int) -> tuple[Conn, Conn, str]:
        own, other = await Conn.open(urls[i % 3]), await Conn.open(urls[(i + 1) % 3])
        await own.send({"t": "session.open", "id": 0})
        sid = (await own.until("session"))["sid"]
        await other.send({"t": "session.open", "sid": sid, "id": 0})
        await other.until("session")
        return own, other, sid

    async def session(own: Conn, other: Conn, sid: str) -> None:
        nonlocal deltas
        end = time.monotonic() + seconds

        async def follow(c: Conn, out: list[float], count: bool) -> None:
            nonlocal deltas
            while True:
                f = await c.recv()
                if f["t"] == "delta":
                    out.append((time.monotonic() - float(f["x"])) * 1000)
                    deltas += count
                elif f["t"] == "turn.end":
                    return
                elif f["t"] == "error":
                    raise RuntimeError(f"error frame: {f}")

        while time.monotonic() < end:
            await own.send({"t": "say", "sid": sid, "text": "go", "params": {"max_tokens": tokens}})
            await asyncio.gather(follow(own, owner_lat, True), follow(other, remote_lat, False))
        await own.ws.close()
        await other.ws.close()

    opened = [await setup(i) for i in range(sessions)]  # one after another: the relay is measured, not a rush
    r = redis.Redis.from_url(fl.redis.url)
    cpu0, busy0 = redis_cpu(r), cpu_busy()
    await asyncio.gather(*(session(*c) for c in opened))
    cpu1, busy1 = redis_cpu(r), cpu_busy()
    r.close()
    o, m = summary(owner_lat), summary(remote_lat)
    return {
        "sessions": sessions,
        "deltas": deltas,
        "owner_ms": o,
        "remote_ms": m,
        "added_p50_ms": round(m["p50"] - o["p50"], 3),
        "added_p99_ms": round(m["p99"] - o["p99"], 3),
        "redis_cpu_us_per_delta": round((cpu1 - cpu0) / max(1, deltas) * 1e6, 2),
        "machine_cpu_busy": round((busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]), 3),
    }


async def resume(fl: Fleet, n: int) -> dict[str, Any]:
    urls = [u for _, u in fl.nodes]
    c = await Conn.open(urls[0])
    await c.send({"t": "session.open", "id": 0})
    s = await c.until("session")
    await c.send({"t": "say", "sid": s["sid"], "text": "fill", "params": {"max_tokens": 20}})
    end = await c.until("turn.end")
    out: dict[str, list[float]] = {"owner": [], "other": []}
    for i in range(n):
        for where, url in (("owner", urls[0]), ("other", urls[1 + i % 2])):
            t0 = time.perf_counter()
            r = await Conn.open(url)
            await r.send({"t": "session.resume", "sid": s["sid"], "ep": s["ep"], "last_seq": end["seq"] - 5})
            await r.until("session")
            await r.recv()  # the first missed frame
            out[where].append((time.perf_counter() - t0) * 1000)
            await r.ws.close()
    return {k: summary(v) for k, v in out.items()}


async def failover(fl: Fleet, runs: int) -> dict[str, Any]:
    times = []
    for run in range(runs):
        urls = [u for _, u in fl.nodes]
        own = await Conn.open(urls[0])
        await own.send({"t": "session.open", "id": 0})
        s = await own.until("session")
        await own.send({"t": "say", "sid": s["sid"], "text": "x", "params": {"max_tokens": 3}})
        await own.until("turn.end")
        proc = fl.nodes[0][0]
        t0 = time.perf_counter()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        c = await Conn.open(urls[1])  # the client's next say, on another node
        await c.send({"t": "session.open", "sid": s["sid"], "id": 0})
        await c.until("session")
        await c.send({"t": "say", "sid": s["sid"], "text": "after", "params": {"max_tokens": 3}})
        try:
            await c.until("turn.start")
        except websockets.ConnectionClosed:  # the takeover closed the relayed client: it attaches again
            c = await Conn.open(urls[1])
            await c.send({"t": "session.open", "sid": s["sid"], "id": 0, "snapshot": True})
            snap = (await c.until("session"))["snap"]
            assert snap["running"] is not None or snap["turns"][-1]["user"] == "after", snap
        started = (time.perf_counter() - t0) * 1000
        times.append(started)
        fl.nodes[0] = fl.start(10 + run)
    return {"kill_to_turn_start_ms": summary(times), "runs": times}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--tokens", type=int, default=40)
    ap.add_argument("--resumes", type=int, default=200)
    ap.add_argument("--failovers", type=int, default=5)
    ap.add_argument("--appendfsync", default="always", help="Redis's: always (the tests') or everysec (its default)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fl = Fleet(Path(tmp), a.rate, fsync=a.appendfsync)
        try:
            ping = redis.Redis.from_url(fl.redis.url)
            rtt = []
            for _ in range(500):
                t0 = time.perf_counter()
                ping.ping()
                rtt.append((time.perf_counter() - t0) * 1000)
            result = {"redis_ping_ms": summary(rtt), "rate": a.rate, "appendfsync": a.appendfsync}
            result["relay"] = await relay(fl, a.sessions, a.seconds, a.tokens)
            print("relay", result["relay"], flush=True)
            result["resume"] = await resume(fl, a.resumes)
            print("resume", result["resume"], flush=True)
            result["failover"] = await failover(fl, a.failovers)
            print("failover", result["failover"], flush=True)
        finally:
            fl.close()
    print(write_json(f"fleet-{a.sessions}x{int(a.rate)}-{a.appendfsync}", result))


if __name__ == "__main__":
    asyncio.run(main())
