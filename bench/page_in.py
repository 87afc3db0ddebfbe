"""A session's next line when it was paged out of memory, beside one that stayed resident (issue 16).

Sessions get 10-turn histories on the bundled model; then, round after round, each session says one more line and
the client times it from sending ``say`` to the first ``delta`` (the page-in happens on that path, so the server's
own ``ttft_ms``, which starts at the turn, would miss it). Resident sessions keep their connection; paged ones
are said to on a fresh connection once the server has moved them out of memory (``session_idle_s``), their KV
still held by the engine. Then the server is restarted and each paged session's first line is timed once more:
its KV must be rebuilt by prefilling its history (the floor of that case).

    python -m bench.page_in [--sessions 4] [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from . import common
from .common import start_rtserver, stop, summary, write_json

IDLE_S = "1.0"  # session_idle_s: paged sessions leave memory a second after their connection closes


class Conn(common.Conn):
    async def turn(self, sid: str, text: str) -> float:
        """Milliseconds from sending ``say`` to the first delta; waits for the turn's end."""
        t0 = time.perf_counter()
        await self.send({"t": "say", "sid": sid, "text": text, "params": {"max_tokens": 12, "temperature": 0}})
        first = None
        while True:
            f = await self.recv()
            if f["t"] == "delta" and first is None:
                first = (time.perf_counter() - t0) * 1000
            if f["t"] == "turn.end":
                return first if first is not None else float("nan")
            if f["t"] == "error":
                raise RuntimeError(f)


def metric(http: str, name: str) -> float:
    with urllib.request.urlopen(http + "/metrics") as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


async def until_paged(http: str, total: float) -> None:
    for _ in range(600):  # a benchmark's poll of the server's own count, not a test's synchronisation
        if metric(http, "rtserver_sessions_paged_out_total") >= total:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"sessions were not paged out ({total} expected)")


async def run(url: str, n: int, rounds: int) -> dict[str, Any]:
    http = url.replace("ws://", "http://").rstrip("/")
    keep = await Conn.open(url)
    sids: dict[str, list[str]] = {"resident": [], "paged": []}
    for group in sids:
        for _ in range(n):
            await keep.send({"t": "session.open", "persona": "You are Bram, a gruff blacksmith in Eastmere."})
            sids[group].append((await keep.recv())["sid"])
    for i in range(10):  # the histories
        for sid in sids["resident"] + sids["paged"]:
            await keep.turn(sid, f"Tell me about the forge, part {i}.")
    await keep.ws.close()  # detaches everything; the resident ones are attached again at once
    keep = await Conn.open(url)
    for sid in sids["resident"]:
        await keep.send({"t": "session.open", "sid": sid})
        await keep.recv()
    out: dict[str, list[float]] = {"resident": [], "paged": []}
    for r in range(rounds):
        await until_paged(http, n * (r + 1))
        for sid in sids["paged"]:
            c = await Conn.open(url)
            out["paged"].append(await c.turn(sid, f"And the price of a sword, take {r}?"))
            await c.ws.close()
        for sid in sids["resident"]:
            out["resident"].append(await keep.turn(sid, f"And the price of a sword, take {r}?"))
    await keep.ws.close()
    return {"sids": sids, **out}


async def rebuilt(url: str, sids: list[str]) -> list[float]:
    got = []
    for sid in sids:
        c = await Conn.open(url)
        got.append(await c.turn(sid, "One last question."))
        await c.ws.close()
    return got


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.page_in", description=__doc__)
    p.add_argument("--sessions", type=int, default=4, help="sessions in each group")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--server-cpus", default="0,1")
    a = p.parse_args()
    env = {"RTSERVER_SESSION_IDLE_S": IDLE_S}
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_rtserver([], a.server_cpus, Path(tmp), env)
        try:
            got = asyncio.run(run(url, a.sessions, a.rounds))
        finally:
            stop(proc)
        proc, url = start_rtserver([], a.server_cpus, Path(tmp), env)
        try:
            cold = asyncio.run(rebuilt(url, got["sids"]["paged"] + got["sids"]["resident"]))
        finally:
            stop(proc)
    result = {
        "params": vars(a),
        "resident_ms": summary(got["resident"]),
        "paged_in_ms": summary(got["paged"]),
        "rebuilt_ms": summary(cold),
        "raw": {"resident": got["resident"], "paged": got["paged"], "rebuilt": cold},
    }
    p50 = result["paged_in_ms"]["p50"], result["resident_ms"]["p50"]
    result["paged_minus_resident_p50_ms"] = round(p50[0] - p50[1], 3)
    print(json.dumps({k: v for k, v in result.items() if k != "raw"}, indent=1))
    write_json("page-in-tiny", result)


if __name__ == "__main__":
    main()
