"""Frame delivery under load: 1,000 concurrent streaming sessions at 20 tokens/s each (scripted engine), engine to
client latency, rtserver beside a bare `websockets` server in the same run, same core pinning (server on one
core, load generator on the other). Several runs, alternating; medians of each run's p50/p99.

    python -m bench.stream --sessions 1000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from .common import median, run_json, start_bare, start_rtserver, stop, write_json


def window(a: argparse.Namespace) -> list[str]:
    return [
        "--sessions",
        str(a.sessions),
        "--arrival-rate",
        str(a.arrival_rate),
        "--warmup",
        str(a.warmup),
        "--duration",
        str(a.duration),
    ]


def one_rtserver(a: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        args = ["--engine", "scripted", "--scripted-rate", str(a.rate), "--scripted-words", "100000"]
        args += ["--slots", str(a.sessions)]  # the scripted engine streams every session at once
        proc, url = start_rtserver(args, a.server_cpus, Path(tmp), env={"RTSERVER_SCRIPTED_STAMP": "1"})
        try:
            load = ["-m", "bench.load", "--url", url, "--turns", "1", "--think", "0", "--stamped"]
            return run_json([*load, *window(a), "--max-tokens", str(int(a.rate * 1000))], a.client_cpus)
        finally:
            stop(proc)


def one_bare(a: argparse.Namespace) -> dict[str, Any]:
    proc, url = start_bare(a.server_cpus, a.rate)
    try:
        return run_json(["-m", "bench.bare_client", "--url", url, *window(a)], a.client_cpus)
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--rate", type=float, default=20.0, help="tokens/s per session")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--arrival-rate", type=float, default=200.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--client-cpus", default="1")
    a = p.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {"rtserver": [], "bare_websockets": []}
    for i in range(a.runs):
        for name, fn in (("rtserver", one_rtserver), ("bare_websockets", one_bare)):
            r = fn(a)
            runs[name].append(r)
            print(f"run {i + 1} {name}: {json.dumps(r)}", file=sys.stderr)
    result: dict[str, Any] = {"params": vars(a), "runs": runs}
    for name, rs in runs.items():
        result[name] = {
            "delivery_p50_ms": median([r["delivery_ms"]["p50"] for r in rs]),
            "delivery_p99_ms": median([r["delivery_ms"]["p99"] for r in rs]),
            "frames_per_s": median([r["frames_per_s"] for r in rs]),
        }
    rt, bare = result["rtserver"], result["bare_websockets"]
    result["ratio_p99"] = round(rt["delivery_p99_ms"] / bare["delivery_p99_ms"], 2)
    path = write_json(f"stream-{a.sessions}", result)
    print(json.dumps({k: result[k] for k in ("rtserver", "bare_websockets", "ratio_p99")}, indent=1))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
