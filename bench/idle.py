"""Idle sessions per process: N connections that each sent `hello` and `session.open` and finished one turn,
then stay open with default heartbeats. Reports the server's RSS growth per session, beside a bare `websockets`
server holding the same number of idle connections, measured in the same run.

    python -m bench.idle --sessions 10000
    python -m bench.idle --sessions 10000 --model     # the bundled model: its host KV is reported apart
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .common import pinned, rss_kib, start_bare, start_rtserver, stop, write_json


async def turn(ws: Any, codec: Any) -> bool:
    await ws.send(codec.encode({"t": "say", "text": "hi"}))
    while (f := codec.decode(await ws.recv()))["t"] != "turn.end":
        if f["t"] == "error":
            return False
    return True


async def hold(url: str, n: int, protocol: bool) -> None:
    import websockets
    from rtprotocol import Codec

    codec = Codec("rt.v1.msgpack")
    conns = []
    sem = asyncio.Semaphore(64)

    async def one() -> None:
        async with sem:
            ws = await websockets.connect(
                url,
                subprotocols=["rt.v1.msgpack"] if protocol else None,  # type: ignore[list-item]
                compression=None,
                open_timeout=120,
                max_size=None,
            )
            conns.append(ws)
            if protocol:
                await ws.send(codec.encode({"t": "hello"}))
                await ws.recv()
                await ws.send(codec.encode({"t": "session.open", "params": {"max_tokens": 8}}))
                await ws.recv()
                for _ in range(1000):  # busy: the engine's queue was full, try again
                    if await turn(ws, codec):
                        break
                    await asyncio.sleep(0.5)

    await asyncio.gather(*(one() for _ in range(n)))
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    for ws in conns:
        ws.transport.abort()


def kv_host_kib(url: str) -> float:
    import urllib.request

    with urllib.request.urlopen(url.replace("ws://", "http://").rstrip("/") + "/metrics") as r:
        for line in r.read().decode().splitlines():
            if line.startswith("rtserver_engine_kv_host_bytes{"):
                return float(line.split()[-1]) / 1024
    return 0.0


def measure(url: str, pid: int, n: int, protocol: bool, cpus: str) -> dict[str, object]:
    base = rss_kib(pid)
    client = subprocess.Popen(
        pinned(
            [sys.executable, "-m", "bench.idle", "--client", url, "--sessions", str(n)]
            + ([] if protocol else ["--bare"]),
            cpus,
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdout is not None and client.stdin is not None
    line = client.stdout.readline()
    assert line.strip() == "ready", line
    held = rss_kib(pid)
    kv = kv_host_kib(url) if protocol else 0.0
    client.stdin.write("\n")
    client.stdin.flush()
    client.wait()
    return {
        "sessions": n,
        "rss_base_kib": base,
        "rss_held_kib": held,
        "kib_per_session": round((held - base) / n, 2),
        "kv_host_kib": round(kv),
        "kib_per_session_without_kv_host": round((held - base - kv) / n, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=10000)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--client-cpus", default="1")
    p.add_argument("--client", help=argparse.SUPPRESS)
    p.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", action="store_true", help="the bundled model instead of the scripted engine")
    a = p.parse_args()
    if a.client:
        import uvloop

        uvloop.run(hold(a.client, a.sessions, not a.bare))
        return
    out: dict[str, list[dict[str, object]]] = {"rtserver": [], "bare_websockets": []}
    for _ in range(a.runs):
        with tempfile.TemporaryDirectory() as tmp:
            engine = [] if a.model else ["--engine", "scripted", "--scripted-rate", "0", "--slots", "64"]
            proc, url = start_rtserver(engine, a.server_cpus, Path(tmp))
            try:
                out["rtserver"].append(measure(url, proc.pid, a.sessions, True, a.client_cpus))
            finally:
                stop(proc)
        bare, url = start_bare(a.server_cpus)
        try:
            out["bare_websockets"].append(measure(url, bare.pid, a.sessions, False, a.client_cpus))
        finally:
            bare.terminate()
            bare.wait()
    path = write_json(f"idle-{a.sessions}{'-tiny' if a.model else ''}", {"params": vars(a), **out})
    print(json.dumps(out, indent=1))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
