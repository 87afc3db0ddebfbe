"""Load generator for rtserver: N concurrent sessions running multi-turn scripts with think time, arriving
open-loop (Poisson), one WebSocket each. Reports connect time, time to first delta, inter-delta gaps, turn
latency (p50/p90/p99), frames/s and errors as JSON; with a stamping scripted engine (RTSERVER_SCRIPTED_STAMP=1)
also frame delivery latency from engine to client.

    python -m bench.load --url ws://127.0.0.1:8000/ --sessions 100 --turns 5 --think 2 --arrival-rate 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import websockets
from rtprotocol import Codec
from websockets.typing import Subprotocol

from .common import summary

LINES = [
    "Hello!",
    "What is your name?",
    "What do you sell?",
    "Any news?",
    "Do you have any work for me?",
    "Tell me a story.",
    "How are you?",
    "Tell me about this place.",
    "I'll do it.",
    "Goodbye.",
]


@dataclass
class Stats:
    window: tuple[float, float] = (0.0, float("inf"))
    connect: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    ttft_by_turn: dict[int, list[float]] = field(default_factory=dict)
    gap: list[float] = field(default_factory=list)
    turn: list[float] = field(default_factory=list)
    delivery: list[float] = field(default_factory=list)
    frames: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    turns_done: int = 0

    def inside(self, t: float) -> bool:
        return self.window[0] <= t <= self.window[1]


async def session(url: str, a: argparse.Namespace, stats: Stats, rng: random.Random, codec: Codec) -> None:
    t0 = time.monotonic()
    try:
        ws = await websockets.connect(
            url,
            subprotocols=[Subprotocol(codec.subprotocol)],
            compression=None,
            max_size=None,
            open_timeout=60,
            ping_interval=None,
        )
    except Exception as exc:
        stats.errors[type(exc).__name__] = stats.errors.get(type(exc).__name__, 0) + 1
        return
    stats.connect.append((time.monotonic() - t0) * 1000)
    try:
        await ws.send(codec.encode({"t": "hello", "client": "bench"}))
        await ws.recv()
        params: dict[str, Any] = {"seed": rng.randrange(1 << 30)}
        if a.max_tokens:
            params["max_tokens"] = a.max_tokens
        await ws.send(codec.encode({"t": "session.open", "persona": a.persona, "params": params}))
        while codec.decode(await ws.recv())["t"] != "session":
            pass
        turn = 0
        while (a.turns == 0 or turn < a.turns) and time.monotonic() < stats.window[1]:
            sent = time.monotonic()
            await ws.send(codec.encode({"t": "say", "text": rng.choice(LINES)}))
            first = last = None
            while True:
                f = codec.decode(await ws.recv())
                now = time.monotonic()
                kind = f["t"]
                if kind == "delta":
                    if stats.inside(now):
                        stats.frames += 1
                        if first is None:
                            stats.ttft.append((now - sent) * 1000)
                            stats.ttft_by_turn.setdefault(turn, []).append((now - sent) * 1000)
                        else:
                            stats.gap.append((now - last) * 1000)  # type: ignore[operator]
                        if a.stamped:
                            stats.delivery.append((now - float(f["x"])) * 1000)
                    first = first or now
                    last = now
                    if now > stats.window[1]:
                        return  # the window is over; stop mid-turn (closing ends the turn server-side)
                elif kind == "turn.end":
                    if stats.inside(now):
                        stats.turn.append((now - sent) * 1000)
                        stats.turns_done += 1
                    break
                elif kind == "error":
                    stats.errors[f["code"]] = stats.errors.get(f["code"], 0) + 1
                    break
            turn += 1
            if a.think:
                await asyncio.sleep(rng.expovariate(1 / a.think))
    except websockets.ConnectionClosed as exc:
        key = f"closed_{exc.rcvd.code if exc.rcvd else 'abnormal'}"
        stats.errors[key] = stats.errors.get(key, 0) + 1
    finally:
        await ws.close()


async def run(a: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(a.seed)
    codec = Codec(a.subprotocol)
    start = time.monotonic()
    stats = Stats()
    ramp = a.sessions / a.arrival_rate if a.arrival_rate else 0
    measure_from = start + ramp + a.warmup
    stats.window = (measure_from, measure_from + a.duration) if a.duration else (start, float("inf"))
    tasks = []
    for _ in range(a.sessions):
        tasks.append(asyncio.create_task(session(a.url, a, stats, random.Random(rng.random()), codec)))
        if a.arrival_rate:
            await asyncio.sleep(rng.expovariate(a.arrival_rate))
    await asyncio.gather(*tasks)
    elapsed = (min(time.monotonic(), stats.window[1]) - stats.window[0]) if a.duration else time.monotonic() - start
    out = {
        "sessions": a.sessions,
        "turns_done": stats.turns_done,
        "seconds": round(elapsed, 2),
        "frames_per_s": round(stats.frames / elapsed, 1),
        "connect_ms": summary(stats.connect),
        "ttft_ms": summary(stats.ttft),
        "gap_ms": summary(stats.gap),
        "turn_ms": summary(stats.turn),
        "errors": stats.errors,
        "ttft_ms_by_turn": {i: summary(v) for i, v in sorted(stats.ttft_by_turn.items())},
        "ttft_ms_warm": summary([x for i, v in stats.ttft_by_turn.items() if i > 0 for x in v]),
    }
    if a.stamped:
        out["delivery_ms"] = summary(stats.delivery)
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--sessions", type=int, default=100)
    p.add_argument("--turns", type=int, default=5, help="turns per session; 0 = until the window ends")
    p.add_argument("--think", type=float, default=1.0, help="mean think time between turns, seconds (exponential)")
    p.add_argument(
        "--arrival-rate", type=float, default=100.0, help="new sessions per second (Poisson); 0 = all at once"
    )
    p.add_argument("--duration", type=float, default=0.0, help="measurement window, seconds (0: whole run)")
    p.add_argument("--warmup", type=float, default=0.0, help="seconds after the last arrival before measuring")
    p.add_argument("--max-tokens", type=int, default=0)
    p.add_argument("--persona", default="You are Bram, a gruff blacksmith in the village of Eastmere.")
    p.add_argument("--stamped", action="store_true", help="deltas carry the engine's monotonic time")
    p.add_argument("--subprotocol", default="rt.v1.msgpack")
    p.add_argument("--seed", type=int, default=1)
    return p


def main() -> None:
    a = parser().parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(a))))


if __name__ == "__main__":
    main()
