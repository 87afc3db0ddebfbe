"""Time to first delta on the bundled model: a session's first (cold) turn beside its next (warm) turns, whose
history's KV the engine already holds. 1 active session, 10 turns with think time, several runs; medians.

    python -m bench.warm_ttft --runs 5
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from .common import median, run_json, start_rtserver, stop, write_json


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--sessions", type=int, default=1)
    p.add_argument("--turns", type=int, default=10)
    p.add_argument("--think", type=float, default=0.3)
    p.add_argument("--model", default="")
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--client-cpus", default="1")
    a = p.parse_args()
    runs = []
    for _ in range(a.runs):
        with tempfile.TemporaryDirectory() as tmp:
            args = ["--threads", "1"] + (["--model", a.model] if a.model else [])
            proc, url = start_rtserver(args, a.server_cpus, Path(tmp))
            try:
                load = ["-m", "bench.load", "--url", url, "--sessions", str(a.sessions), "--turns", str(a.turns)]
                runs.append(run_json([*load, "--think", str(a.think), "--arrival-rate", "0"], a.client_cpus))
            finally:
                stop(proc)
    result = {
        "params": vars(a),
        "cold_ttft_p50_ms": median([r["ttft_ms_by_turn"]["0"]["p50"] for r in runs]),
        "warm_ttft_p50_ms": median([r["ttft_ms_warm"]["p50"] for r in runs]),
        "warm_ttft_p99_ms": median([r["ttft_ms_warm"]["p99"] for r in runs]),
        "gap_p50_ms": median([r["gap_ms"]["p50"] for r in runs]),
        "gap_p99_ms": median([r["gap_ms"]["p99"] for r in runs]),
        "runs": runs,
    }
    path = write_json(f"warm-ttft-{a.sessions}", result)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
