"""Key press to first delta in the browser's DOM, beside the Python client's first delta, on the bundled model.

Each round starts ``rtserver serve --demo`` on the bundled model (core 0, one llama.cpp thread), then:
- headless Chromium (core 1) opens the demo page, chat mode, and sends ``--turns`` lines with Enter; the page
  times the keydown event to the DOM mutation that adds the reply's first text, and to the client's decoding of
  that delta (the rest is the page's own handling) (clients/js/bench/);
- the Python client (core 1) opens a session with the same persona and parameters and says the same lines,
  timing ``say()`` to its first piece.
The first turn of each session is cold (its persona is prefilled) and left out: the figures are warm turns.
Also the JS client's msgpack decode cost per delta frame (in Chromium and in Node) beside the Python client's.

    flock /tmp/model.lock python -m bench.browser_first_delta --runs 3 --turns 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

from .common import ROOT, median, pinned, start_rtserver, stop, summary, write_json

JS = ROOT / "clients" / "js"


def browser_round(url: str, turns: int, cpus: str) -> dict[str, Any]:
    cmd = pinned(["node", "bench/browser_first_delta.mjs", url, "--turns", str(turns)], cpus)
    out = subprocess.run(cmd, cwd=JS, capture_output=True, text=True, check=True, timeout=600)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


async def python_round(url: str, persona: str, params: dict[str, Any], lines: list[str]) -> dict[str, list[float]]:
    from rtclient import Client

    first, server = [], []
    async with Client(url) as client:
        session = await client.open_session(persona=persona, params=params)
        for line in lines:
            t0 = time.perf_counter()
            turn = await session.say(line)
            seen = None
            async for _ in turn:
                seen = seen or time.perf_counter()
            r = await turn.result()
            first.append(((seen or time.perf_counter()) - t0) * 1000)
            server.append(r.timings.get("ttft_ms") or 0.0)
    return {"say_to_first_piece_ms": first, "server_ttft_ms": server}


def python_decode_us(frame_hex: str) -> float:
    from rtprotocol import Codec

    codec, data = Codec("rt.v1.msgpack"), bytes.fromhex(frame_hex)
    n = 200_000
    return min(timeit.repeat(lambda: codec.decode(data), number=n, repeat=3)) / n * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--turns", type=int, default=10)
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--client-cpus", default="1")
    a = p.parse_args()
    runs = []
    for _ in range(a.runs):
        with tempfile.TemporaryDirectory() as tmp:
            proc, url = start_rtserver(["--threads", "1", "--demo"], a.server_cpus, Path(tmp))
            try:
                b = browser_round(url, a.turns, a.client_cpus)
                py = asyncio.run(python_round(url, b["session"]["persona"], b["session"]["params"], b["lines"]))
            finally:
                stop(proc)
        runs.append(
            {
                "browser_key_to_dom_ms": b["key_to_dom_ms"],
                "browser_key_to_decoded_ms": b["key_to_frame_ms"],
                **py,
                "decode_us": b["decode_us"],
            }
        )
        frame_hex = b["frame_hex"]
    keys = ("browser_key_to_dom_ms", "browser_key_to_decoded_ms", "say_to_first_piece_ms")
    warm = {k: [v for r in runs for v in r[k][1:] if v is not None] for k in keys}
    result = {
        "params": vars(a),
        "browser_key_to_dom_warm_ms": summary(warm["browser_key_to_dom_ms"]),
        "browser_key_to_decoded_warm_ms": summary(warm["browser_key_to_decoded_ms"]),
        "python_say_to_first_piece_warm_ms": summary(warm["say_to_first_piece_ms"]),
        "browser_p50_by_run": [summary(r["browser_key_to_dom_ms"][1:])["p50"] for r in runs],
        "python_p50_by_run": [summary(r["say_to_first_piece_ms"][1:])["p50"] for r in runs],
        "server_ttft_warm_p50_ms": median([v for r in runs for v in r["server_ttft_ms"][1:]]),
        "decode_us_per_delta": {
            "js_chromium": round(median([r["decode_us"]["chromium"] for r in runs]) or 0, 3),
            "js_node": round(median([r["decode_us"]["node"] for r in runs]) or 0, 3),
            "python": round(python_decode_us(frame_hex), 3),
        },
        "runs": runs,
    }
    path = write_json("browser-first-delta", result)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
