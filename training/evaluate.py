"""Accept (or reject) the bundled model on numbers: held-out perplexity, well-formed replies to held-out prompts,
generation speed, and tokenizer agreement between the GGUF and the training tokenizer.

    python -m training.evaluate --model rtserver/models/rtserver-tiny-q4_0.gguf --prompts 500

Held-out text and prompts come from the corpus generator with a seed the training run never used.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtserver.settings import Settings

from .corpus import conversation, render

HELDOUT_SEED = 1_000_004
KEYS = Settings.cache_type_k  # the KV cache's key type rtserver runs with by default


def heldout_text(n: int, seed: int = HELDOUT_SEED) -> str:
    rng = random.Random(seed)
    return "\n".join(render(*conversation(rng)[1:]) for _ in range(n))


@dataclass
class Prompt:
    name: str
    system: str
    history: list[tuple[str, str]]
    user: str


def heldout_prompts(n: int, seed: int = HELDOUT_SEED + 1) -> list[Prompt]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        npc, system, turns = conversation(rng)
        out.append(Prompt(npc.name, system, turns[:-1], turns[-1][0]))
    return out


def is_well_formed(p: Prompt, reply: str, reason: str) -> bool:
    """Ends cleanly (end-of-turn token, not the length limit), non-empty, no chat markup leaking, one line, and
    in character: asked for its name, the character gives the persona's name."""
    if reason != "stop" or not reply.strip() or "<|" in reply or "\n" in reply.strip():
        return False
    if p.user in ("What is your name?", "What's your name?", "Who are you?", "And you are?"):
        return p.name in reply
    return True


def perplexity(model: Path, text: str, window: int = 512, cache_type_k: str = KEYS) -> float:
    from llama_cpp import Llama

    from rtserver.engine.llama import GGML_TYPES

    llm = Llama(str(model), n_ctx=window, logits_all=True, verbose=False, type_k=GGML_TYPES[cache_type_k])
    try:
        return _perplexity(llm, text, window)
    finally:
        llm.close()  # its threads would otherwise slow every measurement after it


def _perplexity(llm: object, text: str, window: int) -> float:
    ids = llm.tokenize(text.encode(), add_bos=False, special=True)  # type: ignore[attr-defined]
    nll, count = 0.0, 0
    for start in range(0, len(ids) - 1, window):
        chunk = ids[start : start + window]
        if len(chunk) < 2:
            break
        llm.reset()  # type: ignore[attr-defined]
        llm.eval(chunk)  # type: ignore[attr-defined]
        logits = np.asarray(llm.scores[: len(chunk)], dtype=np.float64)  # type: ignore[attr-defined]
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        nll -= float(logp[np.arange(len(chunk) - 1), chunk[1:]].sum())
        count += len(chunk) - 1
    return math.exp(nll / count)


async def replies(
    model: Path, prompts: list[Prompt], max_tokens: int = 120, cache_type_k: str = KEYS
) -> tuple[float, float, list[str]]:
    """(fraction well-formed, generated tokens/s, the bad replies) through rtserver's own engine."""
    from rtserver.engine.base import Finish, Message, Request, Token
    from rtserver.engine.llama import EngineConfig, LlamaEngine

    engine = LlamaEngine(model, EngineConfig(n_ctx=2048, slots=1, cache_types=(cache_type_k, "f16")))
    await engine.start()
    good, bad, tokens, seconds = 0, [], 0, 0.0
    try:
        for i, p in enumerate(prompts):
            msgs = [Message("system", p.system)]
            for u, a in p.history:
                msgs += [Message("user", u), Message("assistant", a)]
            msgs.append(Message("user", p.user))
            text, finish = "", None
            t0 = time.perf_counter()
            async for ev in engine.generate(Request(f"p{i}", msgs, temperature=0.7, seed=i, max_tokens=max_tokens)):
                if isinstance(ev, Token):
                    text += ev.text
                elif isinstance(ev, Finish):
                    finish = ev
            assert finish is not None
            seconds += time.perf_counter() - t0
            tokens += finish.completion_tokens
            if is_well_formed(p, text, finish.reason):
                good += 1
            else:
                bad.append(f"{p.user!r} -> {text!r} ({finish.reason})")
    finally:
        await engine.close()
    return good / len(prompts), tokens / seconds, bad


def tokenizer_agreement(model: Path, tokenizer: Path, text: str) -> bool:
    from tokenizers import Tokenizer

    from rtserver.engine.llama import Model

    m = Model(model)
    try:
        return m.tokenize(text) == Tokenizer.from_file(str(tokenizer)).encode(text).ids
    finally:
        m.close()


def main() -> None:
    import asyncio

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, action="append")
    p.add_argument("--tokenizer", type=Path, default=Path("training/tokenizer.json"))
    p.add_argument("--prompts", type=int, default=500)
    p.add_argument("--conversations", type=int, default=300, help="held-out conversations for perplexity")
    p.add_argument("--cache-type-k", default=KEYS, help="the KV cache's key type (as rtserver's cache_type_k)")
    a = p.parse_args()
    models = a.model or [Path("rtserver/models/rtserver-tiny-q4_0.gguf")]
    if len(models) > 1:
        # One process per model: measured in one process, every model after the first ran at a third of its
        # speed (llama.cpp state left behind by the first), which made the tokens/s column meaningless.
        import subprocess
        import sys

        for model in models:
            args = [
                sys.executable,
                "-m",
                "training.evaluate",
                "--model",
                str(model),
                "--tokenizer",
                str(a.tokenizer),
                "--prompts",
                str(a.prompts),
                "--conversations",
                str(a.conversations),
                "--cache-type-k",
                a.cache_type_k,
            ]
            subprocess.run(args, check=True)
        return
    text = heldout_text(a.conversations)
    prompts = heldout_prompts(a.prompts)
    model = models[0]
    rate, tps, bad = asyncio.run(replies(model, prompts, cache_type_k=a.cache_type_k))
    print(
        json.dumps(
            {
                "model": model.name,
                "size_mb": round(model.stat().st_size / 1e6, 2),
                "cache_type_k": a.cache_type_k,
                "perplexity": round(perplexity(model, text, cache_type_k=a.cache_type_k), 4),
                "perplexity_2048_window": round(perplexity(model, text, 2048, a.cache_type_k), 4),
                "well_formed": round(rate, 4),
                "prompts": len(prompts),
                "tokens_per_s": round(tps, 1),
                "tokenizer_agrees": tokenizer_agreement(model, a.tokenizer, text),
                "bad_examples": bad[:5],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
