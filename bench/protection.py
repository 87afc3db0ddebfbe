"""What protection costs (issue 19), each figure beside its baseline in the same run:

- auth + limits per frame, in process: the connection chain's ``frame()`` for a ping from an authenticated
  user, with protection and without (only the filters every node runs); with Redis: one shared-limit decision
  (one Lua script round trip) against a real ``redis-server``, and (two scripts at once) a local Redis Cluster;
- tracing on against off: first delta and deltas/s of the same turns, in-process server, runs alternated;
- the audit log: records/s written (fsynced batches), and turn latency with the disk healthy and slowed
  (every batch write delayed), same load;
- a bystander's inter-delta gap while another client floods the node with frames (from another process,
  rate-limited), against the same bystander alone.

    flock /tmp/model.lock python -m bench.protection --runs 3
    python -m bench.protection --only-redis --name protection-redis
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack
import websockets

from .common import free_port, median, start_rtserver, stop, summary, write_json


def filter_cost(frames: int) -> dict[str, Any]:
    from rtserver.auth.authenticator import Authenticator
    from rtserver.auth.keys import KeyStore
    from rtserver.auth.tokens import mint
    from rtserver.filters.base import Client
    from rtserver.filters.chain import build_pipeline
    from rtserver.metrics import Metrics
    from rtserver.settings import Settings

    tmp = Path(tempfile.mkdtemp())
    auth = Authenticator(KeyStore(tmp), "bench-secret", required=True)
    token = mint("bench-secret", "ann", 3600, now=time.time())  # a player: every limit applies
    out = {}
    for name, on in (("without", False), ("with", True)):
        s = Settings(engine="scripted", frames_per_min=1e9, frames_per_min_ip=1e9, connections_per_ip=0)
        chain = build_pipeline(s, {}, Metrics(), lambda: False, auth=auth if on else None).connection
        if not on:
            chain = chain[:2]  # upgrade, draining: what ran before issue 19
        client = Client("127.0.0.1", ip="127.0.0.1")
        for f in chain:
            f.frame({"t": "hello", "token": token} if on else {"t": "hello"}, client)
        ping, times = {"t": "ping"}, []
        for _ in range(frames):
            t0 = time.perf_counter_ns()
            for f in chain:
                f.frame(ping, client)
            times.append((time.perf_counter_ns() - t0) / 1000)
        out[name] = summary(times)
        if on:
            assert client.principal is not None and client.principal.user == "ann"
    shutil.rmtree(tmp)
    return {"us_per_frame": out}


async def redis_cost(n: int) -> dict[str, Any]:
    """One shared decision (a frame's user and IP limits) on a single ``redis-server``, then on a local 3-master
    Redis Cluster (the two keys in two slots: two scripts at once), each beside its own PING."""
    if shutil.which("redis-server") is None:
        return {"skipped": "no redis-server"}
    port = free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
    )
    try:
        single = await decisions(f"redis://127.0.0.1:{port}/0", n, cluster=False)
    finally:
        proc.terminate()
        proc.wait()
    if shutil.which("redis-cli") is None:
        return single
    from tests.rediscluster import RedisClusterProc

    with tempfile.TemporaryDirectory() as tmp:
        cluster = RedisClusterProc(Path(tmp), extra=["--appendonly", "no"]).start()
        try:
            single["cluster"] = await decisions(cluster.url, n, cluster=True)
        finally:
            cluster.stop()
    return single


async def decisions(url: str, n: int, *, cluster: bool) -> dict[str, Any]:
    from rtserver.limits import Gcra, Limit, SharedLimiter
    from rtserver.protection import redis_for_limits

    client = redis_for_limits(url, 1.0, cluster=cluster)
    for _ in range(100):
        try:
            await client.ping()
            break
        except Exception:  # noqa: BLE001 - not up yet
            await asyncio.sleep(0.05)
    limiter = SharedLimiter(client, Gcra(), timeout=1.0, cluster=cluster)
    lims, ping = [Limit("f:u:ann", 1e9), Limit("f:ip:127.0.0.1", 1e9)], []
    for _ in range(n // 10):
        await limiter.take(lims)
    times = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        assert (await limiter.take(lims)).allowed
        times.append((time.perf_counter_ns() - t0) / 1e6)
    for _ in range(n):
        t0 = time.perf_counter_ns()
        await client.ping()
        ping.append((time.perf_counter_ns() - t0) / 1e6)
    assert limiter.failures == 0, "a decision fell back to the node's own limits: Redis did not answer"
    await client.aclose()
    return {"ms_per_decision": summary(times), "ms_per_redis_ping": summary(ping)}


async def converse(url: str, sessions: int, turns: int, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """``sessions`` clients each saying ``turns`` lines: first delta (ms), gaps between deltas (ms), deltas/s."""
    first, gaps, deltas = [], [], 0
    t_start = time.perf_counter()

    async def one() -> None:
        nonlocal deltas
        async with websockets.connect(url, compression=None, additional_headers=headers or {}) as ws:
            await ws.send(msgpack.packb({"t": "hello"}))
            await ws.recv()
            await ws.send(msgpack.packb({"t": "session.open"}))
            await ws.recv()
            for i in range(turns):
                t0 = time.perf_counter()
                await ws.send(msgpack.packb({"t": "say", "text": f"line {i}"}))
                last = None
                while True:
                    f = msgpack.unpackb(await ws.recv())
                    now = time.perf_counter()
                    if f["t"] == "delta":
                        deltas += 1
                        if last is None:
                            first.append((now - t0) * 1000)
                        else:
                            gaps.append((now - last) * 1000)
                        last = now
                    elif f["t"] in ("turn.end", "error"):
                        break

    await asyncio.gather(*[one() for _ in range(sessions)])
    seconds = time.perf_counter() - t_start
    return {"first_delta_ms": summary(first), "gap_ms": summary(gaps), "deltas_per_s": round(deltas / seconds, 1)}


async def in_process(settings: dict[str, Any], work: Any, slow_disk: float = 0.0) -> dict[str, Any]:
    from rtserver.engine.scripted import ScriptedEngine
    from rtserver.server import Server
    from rtserver.settings import Settings

    tmp = tempfile.mkdtemp()
    s = Settings(engine="scripted", port=free_port(), data_dir=tmp, frames_per_min=0, frames_per_min_ip=0, **settings)
    server = Server(s, engines={"default": ScriptedEngine(s.scripted_rate, s.scripted_words, capacity=s.slots)})
    if slow_disk:
        server.audit.slow_disk = lambda: time.sleep(slow_disk)
    task = asyncio.create_task(server.run())
    while not server.ready:  # noqa: ASYNC110 - the server has no event for it; this is set-up, not measured
        await asyncio.sleep(0.01)
    try:
        return dict(await work(f"ws://127.0.0.1:{s.port}/"))
    finally:
        server._stop.set()
        await task
        shutil.rmtree(tmp)


async def tracing(runs: int, sessions: int, turns: int) -> dict[str, Any]:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    trace.set_tracer_provider(provider)
    out: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for _ in range(runs):
        for name in ("off", "on"):
            work = lambda url: converse(url, sessions, turns)  # noqa: E731
            settings = {"tracing": name == "on", "audit": False, "scripted_rate": 0.0}  # unpaced: overhead shows
            out[name].append(await in_process(settings, work))
    return _medians(out)


async def audit(runs: int, sessions: int, turns: int, records: int) -> dict[str, Any]:
    from rtserver.audit.log import AuditLog

    tmp = Path(tempfile.mkdtemp())
    log = AuditLog(tmp, "bench")
    await log.start()
    t0 = time.perf_counter()
    for i in range(records):
        log.append("turn", {"sid": "s", "tid": i, "user": "ann"}, {"text": "sha256:" + "0" * 64, "reason": "stop"})
    await log.close()
    per_s = records / (time.perf_counter() - t0)
    shutil.rmtree(tmp)
    out: dict[str, list[dict[str, Any]]] = {"healthy": [], "slowed": []}
    for _ in range(runs):
        for name, delay in (("healthy", 0.0), ("slowed", 0.05)):
            work = lambda url: converse(url, sessions, turns)  # noqa: E731
            out[name].append(await in_process({"scripted_rate": 200.0}, work, slow_disk=delay))
    return {"records_per_s": round(per_s), "slowed_disk_s_per_batch": 0.05, **_medians(out)}


def _medians(out: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    def m(runs: list[dict[str, Any]], key: str, stat: str | None = None) -> Any:
        return median([r[key][stat] if stat else r[key] for r in runs])

    return {
        name: {
            "first_delta_p50_ms": m(rs, "first_delta_ms", "p50"),
            "first_delta_p99_ms": m(rs, "first_delta_ms", "p99"),
            "deltas_per_s": m(rs, "deltas_per_s"),
            "runs": rs,
        }
        for name, rs in out.items()
    }


async def flood(url: str, seconds: float) -> None:
    """The flooder (run in its own process): pings as fast as the socket takes them, answers read and dropped."""
    async with websockets.connect(url, compression=None, additional_headers={"X-Forwarded-For": "10.6.6.6"}) as ws:
        await ws.send(msgpack.packb({"t": "hello"}))

        async def drain() -> None:
            async for _ in ws:
                pass

        reader = asyncio.create_task(drain())
        end, sent = time.monotonic() + seconds, 0
        try:
            while time.monotonic() < end:
                await ws.send(msgpack.packb({"t": "ping"}))
                sent += 1
        except websockets.ConnectionClosed:
            pass  # cut off by the node (it did not read its answers fast enough): the flood ends
        reader.cancel()
        print(sent)


async def bystander(runs: int, turns: int) -> dict[str, Any]:
    out: dict[str, list[dict[str, Any]]] = {"alone": [], "flooded": []}
    for _ in range(runs):
        data = Path(tempfile.mkdtemp())
        proc, url = start_rtserver(
            ["--engine", "scripted", "--scripted-rate", "50", "--trusted-proxies", "127.0.0.1"], "0", data
        )
        out["alone"].append(await converse(url, 1, turns))
        flood_cmd = [sys.executable, "-m", "bench.protection", "--flood", url, "--seconds", "60"]
        flooder = subprocess.Popen(flood_cmd, stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220 - between measurements
        await asyncio.sleep(1.0)  # the flood is under way
        out["flooded"].append(await converse(url, 1, turns))
        flooder.terminate()
        flooder.wait()
        stop(proc)
        shutil.rmtree(data)
    gap = {k: median([r["gap_ms"]["p50"] for r in v]) for k, v in out.items()}
    gap99 = {k: median([r["gap_ms"]["p99"] for r in v]) for k, v in out.items()}
    return {"gap_p50_ms": gap, "gap_p99_ms": gap99, "runs": out}


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--flood", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=30.0, help=argparse.SUPPRESS)
    p.add_argument("--name", default="protection")
    p.add_argument("--only-redis", action="store_true", help="only the shared-limit decision (single and cluster)")
    a = p.parse_args()
    if a.flood:
        await flood(a.flood, a.seconds)
        return
    if a.only_redis:
        print(write_json(a.name, {"limits_redis": await redis_cost(5_000)}), file=sys.stderr)
        return
    result = {
        "filters_in_process": filter_cost(20_000),
        "limits_redis": await redis_cost(5_000),
        "tracing": await tracing(a.runs, 8, 25),
        "audit": await audit(a.runs, 8, 25, 50_000),
        "bystander": await bystander(a.runs, 10),
    }
    print(write_json(a.name, result), file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
