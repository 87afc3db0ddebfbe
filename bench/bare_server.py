"""The baseline: a bare `websockets` server on uvloop that streams delta-shaped msgpack frames, each stamped with
its send time, at a fixed rate per connection. Same frame shape and size as rtserver's deltas; no sessions,
no protocol core, no engine. Run by bench/stream.py on the same core as rtserver."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

import msgpack
import uvloop
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


async def handler(ws: ServerConnection, rate: float) -> None:
    with contextlib.suppress(ConnectionClosed):
        await stream(ws, rate)


async def stream(ws: ServerConnection, rate: float) -> None:
    await ws.recv()  # one frame from the client starts the stream
    seq, start = 0, time.monotonic()
    while True:
        seq += 1
        await asyncio.sleep(max(0.0, start + seq / rate - time.monotonic()))
        frame = {"t": "delta", "sid": "q1W2e3R4t5Y6u7I8o9P0aA", "seq": seq, "tid": 1, "x": f" {time.monotonic():.6f}"}
        await ws.send(msgpack.packb(frame))


async def main(port: int, rate: float) -> None:
    async with serve(lambda ws: handler(ws, rate), "127.0.0.1", port, compression=None, ping_interval=20):
        print("listening", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=float, default=20.0)
    a = p.parse_args()
    uvloop.run(main(a.port, a.rate))
