"""Redis's CPU per streamed delta (issue 17's target: at most 5 us, so one Redis core carries 200,000 deltas/s).

python -m bench.redis_cpu [--deltas 20000] [--sessions 64] [--runs 3] [--aof none,always]

Each delta is what the session store writes for one: HINCRBY of the session's seq, XADD to its frame stream
(numbered by seq, MAXLEN ~ 1024) and SPUBLISH on its sharded channel, in one Lua script (EVALSHA). Side by side in
each run, against one redis-server per persistence setting (pinned to --server-cpus; the client to --client-cpus):
  single     one delta per call, one call at a time
  pipe16     one delta per call, 16 calls per pipeline
  batch8     8 deltas per call (one HINCRBY, 8 XADD, 8 SPUBLISH)
  batch8pub  8 deltas per call and one SPUBLISH carrying the 8
  batch8nopub  8 deltas per call, no SPUBLISH (what publishing costs, by difference)
Redis's CPU is read from INFO cpu (used_cpu_sys + used_cpu_user) before and after each, and INFO commandstats
splits the time spent inside commands; a subscriber on every session's channel receives every message (checked).
Beside them: PING's round trip, and each variant's call round trip at the client.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rtserver.redis_compat import Client, connect, sharded_subscribe

from .common import free_port, median, pinned, summary, write_json

SCRIPT = """
local n = #ARGV - 3
local last = redis.call('HINCRBY', KEYS[1], 'seq', n)
for i = 1, n do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], (last - n + i) .. '-0', 'd', ARGV[3 + i])
  if ARGV[3] == '0' then redis.call('SPUBLISH', ARGV[1], ARGV[3 + i]) end
end
if ARGV[3] == '1' then redis.call('SPUBLISH', ARGV[1], table.concat(ARGV, '', 4)) end
return last
"""
DELTA = b"\x84\xa1t\xa5delta\xa3sid\xa8s0000001\xa3seq\xcd\x01\x00\xa4text\xa6 words"  # a delta frame's size
# name: (deltas per call, calls per pipeline, publish: 0 each delta, 1 one for the call, 2 none)
VARIANTS = {
    "single": (1, 1, 0),
    "pipe16": (1, 16, 0),
    "batch8": (8, 1, 0),
    "batch8pub": (8, 1, 1),
    "batch8nopub": (8, 1, 2),
}


def start_redis(folder: Path, aof: str, cpus: str | None) -> tuple[subprocess.Popen[str], int]:
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    persist = ["--appendonly", "no"] if aof == "none" else ["--appendonly", "yes", "--appendfsync", aof]
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", "",
           "--logfile", "", *persist]  # fmt: skip
    proc = subprocess.Popen(pinned(cmd, cpus), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Ready to accept connections" in line:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
            return proc, port
    raise RuntimeError(f"redis-server exited with {proc.wait()}")


async def cpu_s(r: Client) -> tuple[float, float]:
    """Redis's CPU seconds so far: (system, user)."""
    info = await r.info("cpu")
    return float(info["used_cpu_sys"]), float(info["used_cpu_user"])


async def one_variant(r: Client, name: str, deltas: int, sessions: int) -> dict[str, Any]:
    per_call, depth, pub = VARIANTS[name]
    sha = await r.script_load(SCRIPT)  # EVALSHA straight: a pipeline of Script calls adds a SCRIPT EXISTS
    channels = [f"rt:{{s{i}}}:c" for i in range(sessions)]
    sub = await sharded_subscribe(r, *channels)
    calls, rtts = deltas // per_call, []
    want, got, all_in = [calls * per_call, calls, 0][pub], 0, asyncio.Event()

    async def drain() -> None:
        nonlocal got
        while await sub.get(wait_s=30) is not None:
            got += 1
            if got == want:
                all_in.set()

    def call(c: int) -> list[Any]:
        i = c % sessions
        return [sha, 2, f"rt:{{s{i}}}:s", f"rt:{{s{i}}}:f", channels[i], 1024, pub, *[DELTA] * per_call]

    reader = asyncio.create_task(drain())
    await r.config_resetstat()
    before = await cpu_s(r)
    t0 = time.perf_counter()
    for start in range(0, calls, depth):
        t = time.perf_counter()
        if depth == 1:
            await r.evalsha(*call(start))
        else:
            p = r.pipeline(transaction=False)
            for c in range(start, min(start + depth, calls)):
                p.evalsha(*call(c))
            await p.execute()
        rtts.append((time.perf_counter() - t) * 1e6)
    wall = time.perf_counter() - t0
    after = await cpu_s(r)
    stats = await r.info("commandstats")
    sys_s, user_s = after[0] - before[0], after[1] - before[1]
    if want:
        await asyncio.wait_for(all_in.wait(), 60)  # every message reached the subscriber
    reader.cancel()
    await sub.aclose()
    return {
        "deltas": calls * per_call,
        "us_per_delta": round((sys_s + user_s) / (calls * per_call) * 1e6, 2),
        "sys_us_per_delta": round(sys_s / (calls * per_call) * 1e6, 2),
        "client_deltas_per_s": round(calls * per_call / wall),
        "messages_received": got,
        "messages_sent": want,
        "call_rtt_us": summary(rtts),
        # Inside Redis, by command (those a script runs too): microseconds per delta.
        "command_us_per_delta": {
            k.removeprefix("cmdstat_"): round(v["usec"] / (calls * per_call), 2)
            for k, v in stats.items()
            if k.removeprefix("cmdstat_") in ("evalsha", "hincrby", "xadd", "spublish")
        },
    }


async def ping_rtt(r: Client, n: int = 2000) -> dict[str, Any]:
    rtts = []
    for _ in range(n):
        t = time.perf_counter()
        await r.ping()
        rtts.append((time.perf_counter() - t) * 1e6)
    return summary(rtts)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    modes = args.aof.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        servers = {m: start_redis(Path(tmp) / m, m, args.server_cpus) for m in modes}
        clients = {m: await connect(f"redis://127.0.0.1:{port}/0", call_s=5.0) for m, (_, port) in servers.items()}
        rounds: list[dict[str, Any]] = []
        version = (await next(iter(clients.values())).info("server"))["redis_version"]
        try:
            for _ in range(args.runs):
                rnd: dict[str, Any] = {}
                for m, r in clients.items():
                    rnd[m] = {"ping_rtt_us": await ping_rtt(r)}
                    for name in VARIANTS:
                        rnd[m][name] = await one_variant(r, name, args.deltas, args.sessions)
                rounds.append(rnd)
        finally:
            for r in clients.values():
                await r.aclose()
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait()
    medians = {
        m: {
            **{v: median([rnd[m][v]["us_per_delta"] for rnd in rounds]) for v in VARIANTS},
            "ping_rtt_p50_us": median([rnd[m]["ping_rtt_us"]["p50"] for rnd in rounds]),
            "ping_rtt_p99_us": median([rnd[m]["ping_rtt_us"]["p99"] for rnd in rounds]),
        }
        for m in modes
    }
    return {"args": vars(args), "redis_version": version, "median_us_per_delta": medians, "rounds": rounds}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deltas", type=int, default=20000)
    ap.add_argument("--sessions", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--aof", default="none,always", help="persistence settings: none, always, everysec")
    ap.add_argument("--server-cpus", default="0")
    ap.add_argument("--client-cpus", default="1")
    ap.add_argument("--name", default="redis-cpu")
    a = ap.parse_args()
    if a.client_cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in a.client_cpus.split(",")})
    result = asyncio.run(main(a))
    print(write_json(a.name, result))
    for mode, figures in result["median_us_per_delta"].items():
        print(mode, figures)
