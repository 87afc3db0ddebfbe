"""Card sessions on the bundled model (issue 20): what a storyteller's turn costs beside a plain persona's, what 64
sessions of one card cost when they open at once, and the replay tool as a load generator.

1. ``warm``: one session of an ~800-token card with a 20-entry book, and one plain session whose persona is the
   same text; each warmed up, then ``--rounds`` rounds, each measuring (client-side, request to first delta) a
   turn with no new book entry, a turn that activates one entry, and a turn after a story variable changed, each
   right after the plain session's turn with the same line. (Between them an unmeasured turn lets the activated
   entry fall out of the scan window again, so each round starts alike.)
2. ``open``: ``--open`` sessions of the card open at once and each says one line: first-delta p50/p99, and the
   engine's counters (the card's tokens prefilled once, copied for the rest).
3. ``replay``: a three-turn seeded card story recorded with rtclient, then ``replay run --copies N --speed max``
   against the same node: turns/s and first-delta percentiles.

Server pinned to core 0 with one llama.cpp thread, this process to core 1 (where there is one).

    python -m bench.story --model rtserver/models/rtserver-tiny-q4_0.gguf --rounds 8 --open 64 --copies 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from rtclient import Client, Session
from rtprotocol.recording import load

from .common import median, start_rtserver, stop, summary, write_json

WORDS = (
    "the old tower stands above the grey river where the ferry crosses at dawn and the bells ring for the dead "
    "while traders from the south bring salt and amber to the market square and the guards keep watch on the wall"
).split()
LINE = "Tell me more about the tower."


def make_card(target_tokens: int, count: Any) -> dict[str, Any]:
    """A V2 card whose text comes to about ``target_tokens`` (as ``count`` tokenizes it) with a 20-entry book,
    keyed ``rune00`` ... ``rune19`` (words no reply of the model contains)."""
    sentences: list[str] = []
    while count(" ".join(sentences)) < target_tokens - 60:
        i = len(sentences)
        sentences.append(" ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(12)).capitalize() + ".")
    entries = [
        {
            "id": i,
            "keys": [f"rune{i:02d}"],
            "content": f"The rune{i:02d} stone lies under the {WORDS[i]} and hums when the {WORDS[i + 3]} wakes.",
            "enabled": True,
            "insertion_order": i,
            "extensions": {},
        }
        for i in range(20)
    ]
    data = {
        "name": "Oren",
        "description": " ".join(sentences),
        "personality": "slow, wise",
        "scenario": "{{user}} visits the tower keeper.",
        "first_mes": "Welcome, {{user}}.",
        "character_book": {"scan_depth": 2, "token_budget": 2048, "entries": entries},
    }
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": data}


async def first_delta(s: Session, line: str) -> tuple[float, dict[str, int]]:
    t0 = time.perf_counter()
    turn = await s.say(line)
    ms = None
    async for _ in turn:
        if ms is None:
            ms = (time.perf_counter() - t0) * 1000
    r = await turn.result()
    return (ms if ms is not None else float("nan")), r.usage


async def warm(url: str, card: dict[str, Any], persona: str, rounds: int) -> dict[str, Any]:
    params = {"temperature": 0, "max_tokens": 8}
    out: dict[str, list[float]] = {k: [] for k in ("plain", "no_entry", "new_entry", "var_changed")}
    usage: dict[str, list[dict[str, int]]] = {k: [] for k in out}
    async with Client(url) as c:
        card_s = await c.open_session(card=card, user="Ada", params=params, vars={"visits": 0})
        plain = await c.open_session(persona=persona, params=params)
        for s in (card_s, plain):
            for line in ("Hello.", "Who are you?"):
                await first_delta(s, line)

        async def pair(kind: str, line: str) -> None:
            ms, u = await first_delta(plain, line)
            out["plain"].append(ms)
            usage["plain"].append(u)
            ms, u = await first_delta(card_s, line)
            out[kind].append(ms)
            usage[kind].append(u)

        for r in range(rounds):
            await pair("no_entry", LINE)
            await pair("new_entry", f"What is the rune{r % 20:02d} stone?")
            await first_delta(card_s, LINE)  # (unmeasured) the entry leaves the scan window
            await first_delta(plain, LINE)
            await card_s.update(vars={"visits": r + 1})
            await pair("var_changed", LINE)
    res: dict[str, Any] = {k: summary(v) for k, v in out.items()}
    for k in out:
        res[k]["prefilled_p50"] = median([u["prompt"] - u["reused"] for u in usage[k]])
        res[k]["prompt_p50"] = median([u["prompt"] for u in usage[k]])
    for k in ("no_entry", "new_entry", "var_changed"):
        res[k]["ratio_to_plain_p50"] = round(res[k]["p50"] / res["plain"]["p50"], 3)
    return res


def counters(url: str) -> dict[str, float]:
    http = url.replace("ws://", "http://").rstrip("/")
    with urllib.request.urlopen(f"{http}/metrics", timeout=10) as r:
        body = r.read().decode()
    out: dict[str, float] = {}
    for line in body.splitlines():
        if line.startswith("rtserver_engine_") and not line.startswith("#"):
            name = line.split("{")[0].split()[0].removeprefix("rtserver_engine_").removesuffix("_total")
            out[name] = out.get(name, 0.0) + float(line.split()[-1])
    return out


async def open_at_once(url: str, card: dict[str, Any], n: int) -> dict[str, Any]:
    params = {"temperature": 0, "max_tokens": 8}
    async with Client(url) as c:
        sessions = [await c.open_session(card=card, user="Ada", params=params) for _ in range(n)]
        before = counters(url)
        results = await asyncio.gather(*(first_delta(s, LINE) for s in sessions))
        after = counters(url)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in ("prefilled_tokens", "shared_prefix_tokens")}
    prompt = results[0][1]["prompt"]
    return {
        "sessions": n,
        "first_delta_ms": summary([ms for ms, _ in results]),
        "prompt_tokens": prompt,
        **delta,
        "card_prefills": round(delta["prefilled_tokens"] / prompt, 2),  # 1.0 + the lines: the card once
    }


async def replay(url: str, card: dict[str, Any], copies: int, folder: Path) -> dict[str, Any]:
    from rtserver.replay import run as R

    rec = folder / "story.jsonl"
    async with Client(url, record=rec) as c:
        s = await c.open_session(card=card, user="Ada", params={"seed": 3, "max_tokens": 16})
        for line in ("Hello.", "What is the rune03 stone?", LINE):
            await (await s.say(line)).result()
        await s.close()
    report = await R.run(load(rec), url, speed=0, copies=copies)
    return {**report.summary(), "code": report.code}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="rtserver/models/rtserver-tiny-q4_0.gguf")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--open", type=int, default=64)
    p.add_argument("--copies", type=int, default=200)
    p.add_argument("--card-tokens", type=int, default=800)
    p.add_argument("--name", default="story-tiny")
    args = p.parse_args()
    from rtserver.engine.model import Model
    from rtserver.story.render import system_block
    from rtserver.story.state import Story

    model = Model(Path(args.model))
    card = make_card(args.card_tokens, lambda text: len(model.tokenize(text)))
    persona = system_block(Story(card, "Ada"), None, [])
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    result: dict[str, Any] = {"card_tokens": len(model.tokenize(persona)), "book_entries": 20}
    env = {"RTSERVER_FSYNC": "false", "RTSERVER_MAX_QUEUE_WAIT": "3600", "RTSERVER_MAX_QUEUED_TURNS": "100000"}
    common = ["--model", args.model, "--threads", "1"]
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_rtserver([*common, "--slots", "8", "--n-ctx", "4096"], "0", Path(tmp) / "a", env)
        try:
            result["warm"] = asyncio.run(warm(url, card, persona, args.rounds))
            result["replay"] = asyncio.run(replay(url, card, args.copies, Path(tmp)))
        finally:
            stop(proc)
        slots = ["--slots", str(args.open), "--n-ctx", "1024"]
        proc, url = start_rtserver([*common, *slots], "0", Path(tmp) / "b", {**env, "RTSERVER_KV_HOST_MB": "0"})
        try:
            result["open"] = asyncio.run(open_at_once(url, card, args.open))
        finally:
            stop(proc)
    path = write_json(args.name, result)
    print(path)
    import json

    print(json.dumps(result))


if __name__ == "__main__":
    main()
