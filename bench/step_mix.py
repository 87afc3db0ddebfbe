"""What one llama.cpp step costs when a new turn's prompt shares it with other sequences' next tokens, against the
two decoded apart: the measurement behind the engine's ``prefill_first``. A context of 16 sequences (split KV, as
rtserver's) each holding a 150-token history (``--history``); a 10-token prompt on sequence 15, and one next
token on each of sequences 0..k-1. Medians of ``--runs`` steps, one llama.cpp thread, pinned to core 0 by the
caller if wanted. Keys are stored as ``--cache-type-k`` (f16 by default, as in the runs that measured
``prefill_first``; rtserver's own default is q8_0).

    taskset -c 0 python -m bench.step_mix --model rtserver/models/rtserver-tiny-q4_0.gguf
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from .common import write_json

PROMPT, SEQS = 10, 16


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--decoders", default="0,1,2,4,8,14", help="numbers of other sequences decoding beside it")
    p.add_argument("--history", type=int, default=150, help="tokens each sequence holds")
    p.add_argument("--cache-type-k", default="f16", help="the KV cache's key type, as rtserver's cache_type_k")
    p.add_argument("--name", default="")
    a = p.parse_args()
    import llama_cpp as C

    from rtserver.engine.llama import EngineConfig, LlamaEngine

    history = a.history
    n_ctx = max(512, history + 2 * PROMPT)
    kinds = (a.cache_type_k, "f16")
    config = EngineConfig(slots=SEQS, n_threads=1, n_ctx=n_ctx, decode_ahead=False, cache_types=kinds)
    engine = LlamaEngine(Path(a.model), config)
    engine.load()
    assert engine.context is not None
    b, mem, ctx = engine.context.batch, engine.context.mem, engine.context.ptr

    def put(n: int, tok: int, pos: int, seq: int, logits: bool) -> int:
        b.token[n], b.pos[n], b.n_seq_id[n], b.logits[n] = tok, pos, 1, logits
        b.seq_id[n][0] = seq
        return n + 1

    for seq in range(SEQS):
        for first in range(0, history, config.n_batch):
            n = 0
            for i in range(first, min(history, first + config.n_batch)):
                n = put(n, 5 + (i * 7 + seq) % 50, i, seq, False)
            b.n_tokens = n
            C.llama_decode(ctx, b)

    def step(prompt: int, k: int) -> float:
        n = 0
        for seq in range(k):
            C.llama_memory_seq_rm(mem, seq, history, -1)
            n = put(n, 20, history, seq, True)
        if prompt:
            C.llama_memory_seq_rm(mem, SEQS - 1, history, -1)
            for i in range(prompt):
                n = put(n, 10 + i, history + i, SEQS - 1, i == prompt - 1)
        b.n_tokens = n
        t0 = time.perf_counter()
        C.llama_decode(ctx, b)
        return (time.perf_counter() - t0) * 1000

    rows: list[dict[str, Any]] = []
    for k in (int(x) for x in a.decoders.split(",")):
        together = statistics.median(step(PROMPT, k) for _ in range(a.runs))
        prompt = statistics.median(step(PROMPT, 0) for _ in range(a.runs))
        others = statistics.median(step(0, k) for _ in range(a.runs)) if k else 0.0
        rows.append(
            {
                "decoders": k,
                "together_ms": round(together, 3),
                "prompt_alone_ms": round(prompt, 3),
                "decoders_alone_ms": round(others, 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    write_json(a.name or f"step-mix-{Path(a.model).stem}", {"params": vars(a), "rows": rows})


if __name__ == "__main__":
    main()
