"""A cached reply's first delta from another node, beside a live generation of the same line, in one run.

Two ``rtserver serve`` nodes share one ``redis-server``. Per turn, a fresh line: node A generates it (live: its
first delta is the engine's), then a session on node B asks the same line (a hit from Redis: B's own cache has
never seen it), then a second session on A (a hit from A's in-process cache). First delta = from sending ``say``
to the first ``delta``, at a client on its own core. Redis's own round trip (PING from the client's core) is
measured beside it, in the same run. On two cores, ``--b-cpus 1 --redis-cpus 1`` put node B and Redis on the client's
core (idle while it waits for B), so that node A's engine work after its turn (decoding ahead, saving KV) does not
delay B's Redis call, as it would not where A is another machine.

    flock /tmp/model.lock python -m bench.cache --engine scripted --turns 200 --runs 5 --b-cpus 1 --redis-cpus 1
    flock /tmp/model.lock python -m bench.cache --engine llama --turns 40 --runs 5 --b-cpus 1 --redis-cpus 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import free_port, median, pinned, start_rtserver, stop, summary, write_json

PERSONA = "You are Bram, a gruff blacksmith in a northern village."


def start_redis(cpus: str | None, data: Path) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(data)]
    proc = subprocess.Popen(pinned(cmd, cpus), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Ready to accept connections" in line:
            import threading

            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
            return proc, f"redis://127.0.0.1:{port}/0"
    raise RuntimeError(f"redis-server exited with {proc.wait()}")


async def first_delta(session: Any, text: str, params: dict[str, Any]) -> tuple[float, str]:
    """Milliseconds from sending ``say`` to the first delta, and turn.end.cache (the turn is read to its end)."""
    t0 = time.perf_counter()
    turn = await session.say(text, params=params)
    first = None
    async for _ in turn:
        if first is None:
            first = (time.perf_counter() - t0) * 1000
    result = await turn.result()
    assert first is not None and result.reason in ("stop", "length"), result
    return first, result.cache


async def one_run(a_url: str, b_url: str, redis_url: str, turns: int, max_tokens: int, tag: str) -> dict[str, Any]:
    from redis.asyncio import Redis
    from rtclient import Client

    params = {"temperature": 0, "max_tokens": max_tokens}
    live: list[float] = []
    other: list[float] = []
    same: list[float] = []
    ping: list[float] = []
    r = Redis.from_url(redis_url)
    async with Client(a_url) as a, Client(b_url) as b:
        for i in range(turns):
            text = f"Run {tag}, line {i}: what do you sell?"
            sa = await a.open_session(persona=PERSONA, params=params)
            sb = await b.open_session(persona=PERSONA, params=params)
            sa2 = await a.open_session(persona=PERSONA, params=params)
            ms, cache = await first_delta(sa, text, params)
            assert cache == "miss", cache
            live.append(ms)
            ms, cache = await first_delta(sb, text, params)
            assert cache == "hit", "node B did not find node A's reply in Redis"
            other.append(ms)
            ms, cache = await first_delta(sa2, text, params)
            assert cache == "hit", cache
            same.append(ms)
            t0 = time.perf_counter()
            await r.ping()
            ping.append((time.perf_counter() - t0) * 1000)
            for s in (sa, sb, sa2):
                await s.close()
    await r.aclose()
    return {
        "live": summary(live),
        "hit_other_node": summary(other),
        "hit_same_node": summary(same),
        "redis_ping": summary(ping),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", choices=["scripted", "llama"], default="scripted")
    p.add_argument("--model", default="rtserver/models/rtserver-tiny-q4_0.gguf")
    p.add_argument("--turns", type=int, default=200)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--client-cpus", default="1")
    p.add_argument("--b-cpus", default=None, help="node B's cores (default: --server-cpus, beside node A)")
    p.add_argument("--redis-cpus", default=None, help="redis-server's cores (default: --server-cpus)")
    p.add_argument("--name", default="")
    args = p.parse_args()
    if args.client_cpus:
        os.sched_setaffinity(0, {int(c) for c in args.client_cpus.split(",")})
    if args.engine == "scripted":
        engine = ["--engine", "scripted", "--scripted-rate", "0"]
    else:
        engine = ["--model", args.model, "--slots", "2", "--n-ctx", "512", "--threads", "1"]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        redis, url = start_redis(args.redis_cpus if args.redis_cpus is not None else args.server_cpus, Path(tmp))
        cpus = {"a": args.server_cpus, "b": args.b_cpus if args.b_cpus is not None else args.server_cpus}
        nodes = [
            start_rtserver([*engine, "--redis", url], cpus[n], Path(tmp) / n, {"RTSERVER_FSYNC": "false"})
            for n in ("a", "b")
        ]
        try:
            for run in range(args.runs):
                res = asyncio.run(one_run(nodes[0][1], nodes[1][1], url, args.turns, args.max_tokens, str(run)))
                print(run, {k: (v["p50"], v["p99"]) for k, v in res.items()}, flush=True)
                runs.append(res)
        finally:
            for proc, _ in nodes:
                stop(proc)
            redis.terminate()
            redis.wait()
    medians = {
        k: {q: median([r[k][q] for r in runs]) for q in ("p50", "p99")}
        for k in ("live", "hit_other_node", "hit_same_node", "redis_ping")
    }
    name = args.name or f"cache-{args.engine}"
    out = write_json(name, {"args": vars(args), "runs": runs, "median_of_runs": medians})
    print(out, medians)


if __name__ == "__main__":
    main()
