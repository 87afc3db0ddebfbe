"""A story many contexts long: what a turn costs as the story grows past the context. One session on the engine
alone (no server, no socket), greedy, the lines of bench/load.py in turn; per turn, the time from submitting it
to its first delta (``first_delta_ms``), the prompt's tokens and the tokens prefilled. Reported by stretches of
the story (``--bucket`` turns), medians and p99 over ``--runs`` runs, and the baseline in the same run: the
first stretch, before the story fills the context. A story's later turns should cost what its first ones do.

    taskset -c 0 python -m bench.long_story --turns 400
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from .common import median, pct, summary, write_json
from .load import LINES

PERSONA = "You are Bram, a gruff blacksmith in the village of Eastmere."


async def story(a: argparse.Namespace) -> list[dict[str, float]]:
    from rtserver.engine.base import Finish, Message, Request, Token
    from rtserver.engine.llama import EngineConfig, LlamaEngine

    engine = LlamaEngine(
        Path(a.model), EngineConfig(n_ctx=a.ctx, slots=1, n_threads=1, cache_types=(a.cache_type_k, "f16"))
    )
    await engine.start()
    messages = [Message("system", PERSONA)]
    turns: list[dict[str, float]] = []
    try:
        for i in range(a.turns):
            messages.append(Message("user", LINES[i % len(LINES)]))
            request = Request("story", list(messages), temperature=0, max_tokens=a.max_tokens)
            sent, first, text = time.perf_counter(), 0.0, []
            async for event in engine.generate(request):
                if isinstance(event, Token):
                    first = first or time.perf_counter()
                    text.append(event.text)
                elif isinstance(event, Finish):
                    turns.append(
                        {
                            "first_delta_ms": (first - sent) * 1000 if first else float("nan"),
                            "prompt_tokens": event.prompt_tokens,
                            "prefilled_tokens": event.prompt_tokens - event.reused_tokens,
                        }
                    )
            messages.append(Message("assistant", "".join(text)))
    finally:
        await engine.close()
    return turns


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="rtserver/models/rtserver-tiny-q4_0.gguf")
    p.add_argument("--ctx", type=int, default=512, help="the session's context, tokens")
    p.add_argument("--turns", type=int, default=400)
    p.add_argument("--bucket", type=int, default=50, help="turns per stretch reported")
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--cache-type-k", default="q8_0")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--name", default="long-story")
    a = p.parse_args()

    runs = [asyncio.run(story(a)) for _ in range(a.runs)]
    stretches: list[dict[str, Any]] = []
    for start in range(0, a.turns, a.bucket):
        cut = [t for run in runs for t in run[start : start + a.bucket]]
        stretches.append(
            {
                "turns": f"{start}-{start + len(cut) // len(runs) - 1}",
                "first_delta_ms": summary([t["first_delta_ms"] for t in cut]),
                "prompt_tokens_p50": median([t["prompt_tokens"] for t in cut]),
                "prefilled_tokens_p50": median([t["prefilled_tokens"] for t in cut]),
                "prefilled_share": round(
                    sum(t["prefilled_tokens"] for t in cut) / max(1, sum(t["prompt_tokens"] for t in cut)), 3
                ),
            }
        )
    base, last = stretches[0]["first_delta_ms"]["p50"], stretches[-1]["first_delta_ms"]["p50"]
    result = {
        "params": vars(a),
        "stretches": stretches,
        "last_over_first_p50": round(last / base, 2) if base and last else None,
        "first_delta_p99_all": pct([t["first_delta_ms"] for run in runs for t in run], 99),
    }
    path = write_json(a.name, result)
    for s in stretches:
        f = s["first_delta_ms"]
        print(
            f"turns {s['turns']:>9}: first delta p50 {f['p50']} p99 {f['p99']} ms, prompt {s['prompt_tokens_p50']} "
            f"tokens, prefilled {s['prefilled_tokens_p50']} ({s['prefilled_share']:.0%} of prompt tokens)"
        )
    print(f"last stretch / first, p50: {result['last_over_first_p50']}  ({path})")


if __name__ == "__main__":
    main()
