"""The embedded store at scale (issue 16's targets).

python -m bench.store startup [--sessions 100000] [--runs 3]
    time from spawning ``rtserver serve`` (scripted engine) to its ``listening`` line, and its resident
    memory then, with N stored sessions beside an empty data dir, in one run
python -m bench.store journal [--sessions 10000] [--turns 100]
    the bytes on disk after sessions x turns written through the store, each session leaving memory (and
    so compacted) every 10 turns with a rollback between, against the bytes of its live state
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import median, write_json


def populate(data: Path, n: int) -> None:
    from rtserver.sessions import records as R
    from rtserver.sessions.history import TurnNode
    from rtserver.sessions.local import LocalStore
    from rtserver.sessions.store import TID_BLOCK, SessionData

    store = LocalStore(data, "bench")
    for i in range(n):
        sid = f"s{i:07d}"
        s = SessionData(sid, f"persona {i}", {}, "default")
        s.history.commit(TurnNode(1, 0, "say", f"line {i}", f"a reply of some thirty words, number {i}" * 3, "stop"))
        path = store.path(sid)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(R.compacted(s, TID_BLOCK, None))


def start_once(data: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "rtserver", "serve", "--engine", "scripted", "--port", "0", "--data-dir", str(data)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if '"listening"' in line or "listening" in line and "url" in line:
            break
    seconds = time.perf_counter() - t0
    rss = next(int(x.split()[1]) for x in open(f"/proc/{proc.pid}/status") if x.startswith("VmRSS:")) / 1024
    proc.terminate()
    proc.wait()
    return {"seconds": seconds, "rss_mb": rss}


def startup(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        full, empty = Path(tmp) / "full", Path(tmp) / "empty"
        t0 = time.perf_counter()
        populate(full, args.sessions)
        made = time.perf_counter() - t0
        rounds = [{"empty": start_once(empty), "full": start_once(full)} for _ in range(args.runs)]
    return {
        "sessions": args.sessions,
        "populate_s": round(made, 1),
        "rounds": rounds,
        "median_seconds": {k: median([r[k]["seconds"] for r in rounds]) for k in ("empty", "full")},
        "median_rss_mb": {k: median([r[k]["rss_mb"] for r in rounds]) for k in ("empty", "full")},
    }


async def journal_run(data: Path, sessions: int, turns: int) -> dict[str, Any]:
    from rtserver.sessions import records as R
    from rtserver.sessions.history import TurnNode
    from rtserver.sessions.local import LocalStore
    from rtserver.sessions.store import FrameLogState, SessionData

    store = LocalStore(data, "bench", fsync=False)
    await store.open()
    live = 0

    async def one(i: int) -> int:
        log = None
        sid = f"s{i:06d}"
        s = SessionData(sid, "You are Bram, a gruff blacksmith in Eastmere.", {}, "default")
        gen = await store.acquire(sid)
        reserved = await store.create(s, gen)
        for t in range(1, turns + 1):
            node = TurnNode(
                t, s.history.head, "say", f"line {t} of the player", "a reply of about thirty words " * 4, "stop"
            )
            await store.save_turn(sid, gen, node)
            s.history.commit(node)
            if t % 10 == 0:
                await store.set_head(sid, gen, t - 1)  # a rollback, then back: garbage for compaction to drop
                await store.set_head(sid, gen, t)
                log = FrameLogState("e", t * 17, [b"f" * 120] * 20, time.time())
                await store.park(sid, gen, s, reserved, log)
                gen = await store.acquire(sid)
        return len(R.compacted(s, reserved, log))  # the live state: history, head, and the frame log it keeps

    t0 = time.perf_counter()
    for start in range(0, sessions, 200):
        live += sum(await asyncio.gather(*(one(i) for i in range(start, min(sessions, start + 200)))))
    await store.close()
    disk = sum(p.stat().st_size for p in store.files())
    return {"seconds": round(time.perf_counter() - t0, 1), "live_bytes": live, "disk_bytes": disk}


def journal(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        r = asyncio.run(journal_run(Path(tmp), args.sessions, args.turns))
    return {
        "sessions": args.sessions,
        "turns_each": args.turns,
        **r,
        "ratio": round(r["disk_bytes"] / r["live_bytes"], 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__)
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("startup")
    s.add_argument("--sessions", type=int, default=100_000)
    s.add_argument("--runs", type=int, default=3)
    j = sub.add_parser("journal")
    j.add_argument("--sessions", type=int, default=10_000)
    j.add_argument("--turns", type=int, default=100)
    p.add_argument("--out", default="")
    args = p.parse_args()
    result = startup(args) if args.what == "startup" else journal(args)
    print(json.dumps(result, indent=1))
    write_json(args.out or f"store-{args.what}", result)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
