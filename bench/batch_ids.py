"""What one llama.cpp step costs, by how the batch lists its sequences (the reason rtserver's engine keeps its
generating sequences on consecutive ids, docs/architecture.md). With a KV split per sequence, llama.cpp puts
into one pass over the weights only a run of consecutive sequence ids taken in batch order; each further run is
another pass. Times one ``llama_decode`` of the same 16 tokens in several shapes, on the engine's own context
settings (one thread, flash attention off), median of several steps; several runs.

    python -m bench.batch_ids --model build/models/random-1024x12-words-q8_0.gguf
"""

from __future__ import annotations

import argparse
import ctypes
import json
import random
import statistics
import sys
import time
from pathlib import Path

import llama_cpp as C

from rtserver.engine.model import init_backend

from .common import write_json

SEQS, N_CTX, HISTORY = 16, 512, 200


class Context:
    def __init__(self, model: Path, threads: int) -> None:
        init_backend()
        self.model = C.llama_model_load_from_file(str(model).encode(), C.llama_model_default_params())
        if not self.model:
            sys.exit(f"llama.cpp could not load {model}")
        p = C.llama_context_default_params()
        p.n_ctx, p.n_batch, p.n_ubatch, p.n_seq_max = N_CTX * SEQS, 512, 512, SEQS
        p.n_threads = p.n_threads_batch = threads
        p.kv_unified = False
        p.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self.ctx = C.llama_init_from_model(self.model, p)
        self.mem = C.llama_get_memory(self.ctx)
        self.batch = C.llama_batch_init(512, 0, 1)
        self.pos = [0] * SEQS
        for seq in range(SEQS):  # every sequence holds a history, as between turns
            self.decode([(seq, HISTORY)])

    def decode(self, plan: list[tuple[int, int]]) -> float:
        """Decode ``n`` tokens of each (sequence, n) in this order; return the milliseconds llama_decode took."""
        b, n = self.batch, 0
        for seq, count in plan:
            for i in range(count):
                b.token[n], b.pos[n], b.n_seq_id[n] = 100 + n % 50, self.pos[seq] + i, 1
                b.seq_id[n][0], b.logits[n] = seq, i == count - 1
                n += 1
            self.pos[seq] += count
        b.n_tokens = n
        t = time.perf_counter()
        if C.llama_decode(self.ctx, b) != 0:
            sys.exit("llama_decode failed")
        return (time.perf_counter() - t) * 1000

    def timed(self, plan: list[tuple[int, int]], steps: int) -> float:
        """Median over several steps, each undone afterwards so that the context stays the same size."""
        times = []
        for _ in range(steps):
            times.append(self.decode(plan))
            for seq, count in plan:
                self.pos[seq] -= count
                C.llama_memory_seq_rm(self.mem, seq, self.pos[seq], -1)
        return statistics.median(times)

    def move_ms(self, steps: int) -> tuple[float, int]:
        """What moving one sequence's KV costs the engine (rtserver/engine/kv.py ``KV._swap``): its per-sequence
        state read from sequence 0 and written into sequence 15 (whose own KV is put back after). Median ms, and
        the state's bytes."""

        def state(seq: int) -> ctypes.Array[ctypes.c_uint8]:
            size = int(C.llama_state_seq_get_size(self.ctx, seq))
            buf: ctypes.Array[ctypes.c_uint8] = (ctypes.c_uint8 * size)()
            C.llama_state_seq_get_data(self.ctx, buf, size, seq)
            return buf

        own, times = state(SEQS - 1), []
        for _ in range(steps):
            t = time.perf_counter()
            moved = state(0)
            C.llama_memory_seq_rm(self.mem, SEQS - 1, -1, -1)
            if C.llama_state_seq_set_data(self.ctx, moved, len(moved), SEQS - 1) != len(moved):
                sys.exit("llama_state_seq_set_data failed")
            times.append((time.perf_counter() - t) * 1000)
            C.llama_memory_seq_rm(self.mem, SEQS - 1, -1, -1)
            C.llama_state_seq_set_data(self.ctx, own, len(own), SEQS - 1)
        return statistics.median(times), len(own)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("build/models/random-1024x12-words-q8_0.gguf"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--steps", type=int, default=9)
    a = p.parse_args()
    scattered = list(range(SEQS))
    random.Random(1).shuffle(scattered)
    shapes: dict[str, list[tuple[int, int]]] = {
        "1 sequence, 1 token": [(0, 1)],
        "16 sequences, 1 token each, ids 0-15 in order": [(s, 1) for s in range(SEQS)],
        "16 sequences, 1 token each, ids 0-15 shuffled": [(s, 1) for s in scattered],
        "8 sequences, 1 token each, ids 0-7": [(s, 1) for s in range(8)],
        "8 sequences, 1 token each, even ids 0-14": [(s, 1) for s in range(0, SEQS, 2)],
        "1 sequence, 16 tokens (a prefill)": [(0, 16)],
    }
    ctx = Context(a.model, a.threads)
    runs: list[dict[str, float]] = []
    for _ in range(a.runs):
        runs.append({k: round(ctx.timed(plan, a.steps), 2) for k, plan in shapes.items()})
        move, size = ctx.move_ms(a.steps)
        runs[-1][f"move one sequence's KV ({HISTORY} tokens, {size} bytes)"] = round(move, 2)
    result = {
        "model": str(a.model),
        "threads": a.threads,
        "history_tokens_per_sequence": HISTORY,
        "step_ms_median_of_runs": {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]},
        "runs": runs,
    }
    path = write_json(f"batch-ids-{a.model.stem}", result)
    print(json.dumps(result["step_ms_median_of_runs"], indent=1))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
