"""Client for bench/bare_server.py: N connections, measures delivery latency of stamped frames in a window."""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import msgpack
import uvloop
import websockets

from .common import summary


async def conn(url: str, window: tuple[float, float], delivery: list[float], counts: list[int]) -> None:
    async with websockets.connect(url, compression=None, max_size=None, open_timeout=60) as ws:
        await ws.send(b"go")
        while time.monotonic() < window[1]:
            f = msgpack.unpackb(await ws.recv())
            now = time.monotonic()
            if window[0] <= now <= window[1]:
                delivery.append((now - float(f["x"])) * 1000)
                counts[0] += 1


async def main(a: argparse.Namespace) -> dict[str, object]:
    start = time.monotonic()
    window = (
        start + a.sessions / a.arrival_rate + a.warmup,
        start + a.sessions / a.arrival_rate + a.warmup + a.duration,
    )
    delivery: list[float] = []
    counts = [0]
    tasks = []
    for _ in range(a.sessions):
        tasks.append(asyncio.create_task(conn(a.url, window, delivery, counts)))
        await asyncio.sleep(1 / a.arrival_rate)
    await asyncio.gather(*tasks)
    return {"sessions": a.sessions, "frames_per_s": round(counts[0] / a.duration, 1), "delivery_ms": summary(delivery)}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--arrival-rate", type=float, default=200)
    p.add_argument("--warmup", type=float, default=3)
    p.add_argument("--duration", type=float, default=15)
    print(json.dumps(uvloop.run(main(p.parse_args()))))
