"""A fixed workload driven straight into the llama.cpp engine, with a clock the script moves: the replies and the
engine's counters come out the same on every run of one build, so two builds can be compared exactly (the engine
split of issue 16 was checked this way). Rounds of turns, each submitted together while the engine is idle (so
they batch, contend for sequences, time-slice, evict and restore, share a persona), greedy.

    python -m bench.engine_replay --model rtserver/models/rtserver-tiny-q4_0.gguf --out replay.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from .load import LINES

PERSONAS = ["You are Bram, a gruff blacksmith in the village of Eastmere.", "You are Mira, a cheerful herbalist."]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def perf_counter(self) -> float:  # (the engine before the split read time.perf_counter from its module)
        return self.now

    def __getattr__(self, name: str) -> Any:
        import time

        return getattr(time, name)


def engine(model: Path, clock: Clock, **knobs: Any) -> Any:
    from rtserver.engine import llama as L

    try:
        from rtserver.engine.config import EngineConfig
    except ImportError:  # the engine before the split: keyword arguments, and its module's clock
        setattr(L, "time", clock)  # noqa: B010
        return L.LlamaEngine(model, **knobs)
    return L.LlamaEngine(model, EngineConfig(**knobs), clock=clock)


async def run(a: argparse.Namespace) -> dict[str, Any]:
    from rtserver.engine.base import Finish, Message, Request, Token

    clock = Clock()
    knobs = {"n_ctx": a.ctx, "slots": a.slots, "host_budget_mb": a.host_mb, "cache_types": (a.cache_type_k, "f16")}
    e = engine(Path(a.model), clock, n_threads=1, **knobs)
    await e.start()
    histories: dict[str, list[Message]] = {}
    replies: dict[str, list[str]] = {}
    finishes: dict[str, list[dict[str, Any]]] = {}  # per session (across sessions, arrival order may vary)

    async def turn(key: str, line: str) -> None:
        msgs = histories.setdefault(key, [Message("system", PERSONAS[int(key[1:]) % len(PERSONAS)])])
        msgs.append(Message("user", line))
        text = ""
        async for ev in e.generate(Request(key, list(msgs), temperature=0, max_tokens=a.max_tokens)):
            if isinstance(ev, Token):
                text += ev.text
            elif isinstance(ev, Finish):
                finish = {"reason": ev.reason, "prompt": ev.prompt_tokens, "reused": ev.reused_tokens}
                finishes.setdefault(key, []).append(finish)
        msgs.append(Message("assistant", text))
        replies.setdefault(key, []).append(text)

    try:
        for r in range(a.rounds):
            group = [f"s{(r * a.group // 2 + i) % a.sessions}" for i in range(a.group)]  # half of each group returns
            clock.now = r * 10.0
            await asyncio.gather(*(turn(k, LINES[(r + i) % len(LINES)]) for i, k in enumerate(group)))
            await asyncio.to_thread(e.idle.wait, 60)
        return {"replies": replies, "finishes": finishes, "stats": e.stats()}
    finally:
        await e.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--sessions", type=int, default=24)
    p.add_argument("--group", type=int, default=8, help="turns submitted together each round")
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--slots", type=int, default=4)
    p.add_argument("--ctx", type=int, default=512)
    p.add_argument("--host-mb", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--cache-type-k", default="q8_0", help="f16: the context shift is on (long stories)")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    Path(a.out).write_text(json.dumps(asyncio.run(run(a)), indent=1))


if __name__ == "__main__":
    main()
