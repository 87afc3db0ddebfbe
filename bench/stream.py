"""Frame delivery under load: 1,000 concurrent streaming sessions at 20 tokens/s each (scripted engine), engine to
client latency, rtserver beside a bare `websockets` server in the same run, same core pinning (server on one
core, load generator on the other). Several runs, alternating; medians of each run's p50/p99.

    python -m bench.stream --sessions 1000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import free_port, median, pinned, start_rtserver, stop, write_json


def run_client(args: list[str], cpus: str | None) -> dict[str, object]:
    out = subprocess.run(pinned([sys.executable, *args], cpus), capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def one_rtserver(a: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_rtserver(
            ["--engine", "scripted", "--scripted-rate", str(a.rate), "--scripted-words", "100000"],
            a.server_cpus,
            Path(tmp),
            env={"RTSERVER_SCRIPTED_STAMP": "1"},
        )
        try:
            return run_client(
                [
                    "-m",
                    "bench.load",
                    "--url",
                    url,
                    "--sessions",
                    str(a.sessions),
                    "--turns",
                    "1",
                    "--think",
                    "0",
                    "--arrival-rate",
                    str(a.arrival_rate),
                    "--warmup",
                    str(a.warmup),
                    "--duration",
                    str(a.duration),
                    "--max-tokens",
                    str(int(a.rate * 1000)),
                    "--stamped",
                ],
                a.client_cpus,
            )
        finally:
            stop(proc)


def one_bare(a: argparse.Namespace) -> dict[str, object]:
    port = free_port()
    proc = subprocess.Popen(
        pinned([sys.executable, "-m", "bench.bare_server", "--port", str(port), "--rate", str(a.rate)], a.server_cpus),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    try:
        return run_client(
            [
                "-m",
                "bench.bare_client",
                "--url",
                f"ws://127.0.0.1:{port}/",
                "--sessions",
                str(a.sessions),
                "--arrival-rate",
                str(a.arrival_rate),
                "--warmup",
                str(a.warmup),
                "--duration",
                str(a.duration),
            ],
            a.client_cpus,
        )
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
    runs: dict[str, list[dict[str, object]]] = {"rtserver": [], "bare_websockets": []}
    for i in range(a.runs):
        for name, fn in (("rtserver", one_rtserver), ("bare_websockets", one_bare)):
            r = fn(a)
            runs[name].append(r)
            print(f"run {i + 1} {name}: {json.dumps(r)}", file=sys.stderr)
    result: dict[str, object] = {"params": vars(a), "runs": runs}
    for name, rs in runs.items():
        result[name] = {
            "delivery_p50_ms": median([r["delivery_ms"]["p50"] for r in rs]),  # type: ignore[index]
            "delivery_p99_ms": median([r["delivery_ms"]["p99"] for r in rs]),  # type: ignore[index]
            "frames_per_s": median([r["frames_per_s"] for r in rs]),  # type: ignore[misc]
        }
    rt, bare = result["rtserver"], result["bare_websockets"]
    result["ratio_p99"] = round(rt["delivery_p99_ms"] / bare["delivery_p99_ms"], 2)  # type: ignore[index,operator]
    path = write_json(f"stream-{a.sessions}", result)
    print(json.dumps({k: result[k] for k in ("rtserver", "bare_websockets", "ratio_p99")}, indent=1))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
