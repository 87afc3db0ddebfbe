"""What a streamed token costs rtserver beyond llama.cpp's decode: one session on `rtserver serve` (the bundled
model, one sequence, one llama.cpp thread, pinned to core 0), a client on core 1 asking for replies of up to 48
tokens, a new session every 12 turns. Per generated token: each server thread's CPU time and context switches
(from /proc; the event loop is the main thread, the engine the busiest other one), the time in llama_decode (the
engine's own counter, prompts included), and the gap between deltas at the client. Medians of ``--runs`` runs.
For comparing one build with another in the same sitting (run it from a git worktree of each, alternating).
Linux only.

    python -m bench.token_path --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from .common import median, start_rtserver, stop, summary, write_json

PERSONA = "You are Bram, a gruff blacksmith in the village of Eastmere."


def threads(pid: int) -> dict[int, tuple[float, float, float]]:
    """Each thread's (CPU ms, voluntary switches, involuntary switches)."""
    out: dict[int, tuple[float, float, float]] = {}
    tick = 1000 / os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:
            continue
        vol = int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
        inv = int(re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
        out[int(tid)] = ((int(stat[11]) + int(stat[12])) * tick, vol, inv)
    return out


def engine_counter(url: str, name: str) -> float:
    http = url.replace("ws://", "http://").rstrip("/") + "/metrics"
    with urllib.request.urlopen(http, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(f"rtserver_engine_{name}_total"):
                return float(line.split()[-1])
    return 0.0


async def converse(url: str, turns: int) -> list[float]:
    import msgpack
    import websockets

    from .load import LINES

    gaps: list[float] = []
    async with websockets.connect(url, subprotocols=["rt.v1.msgpack"]) as ws:  # type: ignore[list-item]
        await ws.send(msgpack.packb({"t": "hello", "client": "bench.token_path"}))
        await ws.recv()
        for i in range(turns):
            if i % 12 == 0:
                params = {"temperature": 0, "max_tokens": 48}
                await ws.send(msgpack.packb({"t": "session.open", "persona": PERSONA, "params": params}))
                while msgpack.unpackb(await ws.recv())["t"] != "session":
                    pass
            await ws.send(msgpack.packb({"t": "say", "text": LINES[i % len(LINES)]}))
            last = None
            while (f := msgpack.unpackb(await ws.recv()))["t"] != "turn.end":
                if f["t"] == "delta":
                    now = time.perf_counter()
                    if last is not None:
                        gaps.append((now - last) * 1000)
                    last = now
    return gaps


def run(a: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        args = ["--model", a.model, "--slots", "1", "--threads", "1"]
        proc, url = start_rtserver(args, a.server_cpus, Path(tmp))
        try:
            os.sched_setaffinity(0, {int(a.client_cpus)})
            asyncio.run(converse(url, 12))  # warm-up
            before = threads(proc.pid)
            tokens0, decode0 = engine_counter(url, "generated_tokens"), engine_counter(url, "decode_ms")
            gaps = asyncio.run(converse(url, a.turns))
            after = threads(proc.pid)
            tokens = engine_counter(url, "generated_tokens") - tokens0
            decode = engine_counter(url, "decode_ms") - decode0
        finally:
            stop(proc)
    diff = {tid: [y - x for x, y in zip(before.get(tid, (0, 0, 0)), after[tid], strict=True)] for tid in after}
    loop = diff[proc.pid]
    engine = max((d for tid, d in diff.items() if tid != proc.pid), key=lambda d: d[0])
    return {
        "tokens": tokens,
        "gap_ms": summary(gaps),
        "decode_ms_per_token": round(decode / tokens, 4),
        "loop": {
            "cpu_ms": round(loop[0] / tokens, 4),
            "voluntary": round(loop[1] / tokens, 3),
            "involuntary": round(loop[2] / tokens, 3),
        },
        "engine": {
            "cpu_ms": round(engine[0] / tokens, 4),
            "voluntary": round(engine[1] / tokens, 3),
            "involuntary": round(engine[2] / tokens, 3),
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="rtserver/models/rtserver-tiny-q4_0.gguf")
    p.add_argument("--turns", type=int, default=120)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--client-cpus", default="1")
    p.add_argument("--name", default="token-path")
    a = p.parse_args()
    runs = [run(a) for _ in range(a.runs)]
    for r in runs:
        print(r, flush=True)

    def med(*path: str) -> float | None:
        vals = []
        for r in runs:
            v: Any = r
            for k in path:
                v = v[k]
            vals.append(v)
        return median(vals)

    result = {
        "params": vars(a),
        "runs": runs,
        "median": {
            "gap_ms_p50": med("gap_ms", "p50"),
            "decode_ms_per_token": med("decode_ms_per_token"),
            "loop_cpu_ms_per_token": med("loop", "cpu_ms"),
            "loop_switches_per_token": med("loop", "voluntary"),
            "engine_cpu_ms_per_token": med("engine", "cpu_ms"),
            "engine_switches_per_token": med("engine", "involuntary"),
        },
    }
    print(result["median"], write_json(a.name, result))


if __name__ == "__main__":
    main()
