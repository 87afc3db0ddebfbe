"""The long soak of resume across nodes (issue 17): 2,000 random disconnect/reconnect cycles over three nodes and
a Redis, turns said on whichever node a cycle lands on; counts frames lost, repeated or out of order (all must be
0) and turns whose text does not match their ``turn.end`` check. CI runs 200 of these cycles
(tests/e2e/test_fleet.py); this runs the long version.

    python -m bench.fleet_soak [--cycles 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from .common import Conn, summary, write_json
from .fleet import Fleet


async def soak(urls: list[str], cycles: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    c = await Conn.open(urls[0])
    await c.send({"t": "session.open", "id": 0})
    s = await c.until("session")
    await c.ws.close()
    sid, epoch, last = s["sid"], s["ep"], 0
    got: list[dict[str, Any]] = []
    bad = {"lost": 0, "repeated": 0, "not_recovered": 0}
    resume_ms = []
    for cycle in range(cycles):
        t0 = time.perf_counter()
        raw = await Conn.open(rng.choice(urls))
        await raw.send({"t": "session.resume", "sid": sid, "ep": epoch, "last_seq": last, "id": cycle})
        reply = await raw.until("session")
        resume_ms.append((time.perf_counter() - t0) * 1000)
        if not reply.get("recovered"):
            bad["not_recovered"] += 1
            last = reply["seq"]
        if cycle % 4 == 0:
            await raw.send({"t": "say", "sid": sid, "text": f"turn {cycle}", "id": f"say{cycle}",
                            "params": {"max_tokens": 20}})  # fmt: skip
        for _ in range(rng.randrange(0, 12)):
            try:
                async with asyncio.timeout(0.2):  # how long this cycle listens: a random cut
                    f = await raw.recv()
            except TimeoutError:
                break
            if "seq" not in f or f["t"] == "session":
                continue
            if f["seq"] <= last:
                bad["repeated"] += 1
            elif f["seq"] > last + 1:
                bad["lost"] += f["seq"] - last - 1
            if f["seq"] > last:
                last = f["seq"]
                got.append(f)
        raw.ws.transport.abort()
    ends = [f for f in got if f["t"] == "turn.end"]
    mismatched = 0
    for end in ends:
        text = "".join(f["x"] for f in got if f["t"] == "delta" and f["tid"] == end["tid"]).encode()
        mismatched += end["xlen"] != len(text) or end["xcrc"] != zlib.crc32(text)
    starts = [f["id"] for f in got if f["t"] == "turn.start"]
    twice = len(starts) - len(set(starts))
    return {"cycles": cycles, "frames": len(got), "turns_ended": len(ends), **bad, "mismatched_turns": mismatched,
            "turns_run_twice": twice, "reconnect_to_session_ms": summary(resume_ms)}  # fmt: skip


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=17)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fl = Fleet(Path(tmp), 200.0, stamp=False)
        try:
            result = await soak([u for _, u in fl.nodes], a.cycles, a.seed)
        finally:
            fl.close()
    print(result)
    print(write_json(f"fleet-soak-{a.cycles}", result))


if __name__ == "__main__":
    asyncio.run(main())
