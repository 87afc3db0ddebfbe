"""The llama.cpp engine, on llama-cpp-python's low-level batch API: a facade that wires its rooms together.

    model.py      loading the GGUF and creating the context (one KV split per sequence)
    outbox.py     the hand-off of events from the worker thread to the event loops
    scheduler.py  the worker's loop: waiting turns in priority order, time slicing
    kv.py         which session each sequence holds, KV saved in host memory, sequence-id packing
    reuse.py      KV reused beyond a sequence's own prefix: context shift, shared prefixes
    planner.py    the prompt's text and tokens, cut to fit, matched against what the sequence holds
    step.py       one decode step of every running turn (continuous batching) and sampling

All llama.cpp calls happen on one worker thread (a llama.cpp context is not thread-safe; ``llama_decode`` releases
the GIL, so the event loop stays responsive). The clock is injected: tests move it by hand.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import llama_cpp as C

from .base import Event, Finish, Request
from .config import EngineConfig
from .kv import KV
from .model import GGML_TYPES, Context, Model, stderr_silenced
from .notes import SessionNotes
from .outbox import Inbox, Job, Outboxes, events
from .parts import Parts
from .planner import Planner
from .scheduler import Scheduler

__all__ = ["GGML_TYPES", "EngineConfig", "LlamaEngine", "Model"]

COUNTERS = (
    "prefilled_tokens",
    "reused_tokens",
    "generated_tokens",
    "turns",
    "evictions",
    "shared_prefix_tokens",
    "shared_prefix_waits",  # turns that waited for another turn to prefill the prefix they share
    "text_matched_tokens",
    "cached_prefix_tokens",  # prompt tokens copied from a remembered opening (a card's text) instead of tokenized
    "context_shifts",
    "shifted_out_tokens",
    "kv_saved",
    "kv_restored",
    "kv_dropped",
    "kv_saved_ahead",  # idle sessions' KV copied to host memory while the engine had nothing to do
    "kv_saved_ahead_used",  # evictions that kept such a copy instead of saving the KV then
    "kv_restored_ahead",  # sessions' KV put back in the context before their next line, by their pace
    "peak_batch_sequences",
    "steps",  # llama_decode calls
    "prefill_first_steps",  # of which prompts alone, while other turns' next tokens waited a step
    "split_steps",  # of which the batch's sequence ids were not one run (more than one pass)
    "kv_moves",  # sequences' KV moved to keep the generating ones on consecutive ids
    "ahead_tokens",  # template tokens of a next turn decoded before its text came
    "preemptions",  # generating turns parked in host memory to let another turn take their sequence
    "decode_ms",  # time in llama_decode
    "park_ms",  # time parking turns' KV in host memory and putting it back
    "waiting_turns",  # now: turns waiting for a sequence to free
    "parked_turns",  # now: turns in progress whose KV is parked in host memory
)


class LlamaEngine:
    def __init__(
        self, path: Path, config: EngineConfig | None = None, *, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.path, self.config, self.clock = path, config or EngineConfig(), clock
        self.name = self.config.name
        self.capacity = self.config.slots  # turns decoded at once
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.model: Model | None = None
        self.context: Context | None = None
        self.kv: KV | None = None
        self.planner: Planner | None = None
        self.notes = SessionNotes()
        self.outboxes = Outboxes()
        self.inbox = Inbox()
        self.idle = self.inbox.idle  # set while the worker has nothing to do and waits for a turn
        self._thread: threading.Thread | None = None
        self._grammars: dict[bytes, str | None] = {}  # grammar's digest -> why llama.cpp refuses it, or None

    async def start(self) -> None:
        scheduler = await asyncio.to_thread(self.load)
        self._thread = threading.Thread(target=scheduler.run, name=f"engine-{self.name}", daemon=True)
        self._thread.start()

    def load(self) -> Scheduler:
        """Load the model and the context, and wire the rooms that work on them."""
        config, counters = self.config, self.counters
        self.model = model = Model(self.path)
        self.context = context = Context(model, config)
        self.kv = kv = KV(context, config, counters)
        self.planner = planner = Planner(model, context.n_ctx_seq, context.can_shift, counters)
        parts = Parts(config, model, context, kv, planner, self.notes, self.outboxes, counters, self.clock)
        return Scheduler(parts, self.inbox)

    async def close(self) -> None:
        if self._thread is not None:
            self.inbox.jobs.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self.outboxes.close()
        if self.context is not None:
            self.context.close()
            self.context = None
        if self.model is not None:
            self.model.close()

    def stats(self) -> dict[str, int]:
        out = dict(self.counters)
        if self.kv is not None:  # host memory held for saved KV and copies (within kv_host_mb)
            out["kv_host_bytes"] = self.kv.host_bytes + self.kv.copies_bytes
        return out

    def grammar_error(self, grammar: str) -> str | None:
        """Parse the grammar as the sampler will (llama.cpp only reads the model's vocabulary here, so this is safe
        beside the worker thread). Remembered per grammar: a game sends the same schema turn after turn, and each
        parse runs on the event loop."""
        if self.model is None:
            return "the model is not loaded yet"
        data = grammar.encode()
        key = hashlib.blake2b(data, digest_size=16).digest()  # (a grammar may be as long as a frame)
        if key in self._grammars:
            return self._grammars[key]
        with stderr_silenced():  # llama.cpp prints a grammar it refuses, all of it, to stderr
            sampler = C.llama_sampler_init_grammar(self.model.vocab, data, b"root")
        why = None
        if not sampler:
            why = "llama.cpp could not parse it as GBNF with a rule named root (see llama.cpp's grammars/README.md)"
        else:
            C.llama_sampler_free(sampler)
        if len(self._grammars) >= 256:
            del self._grammars[next(iter(self._grammars))]  # the oldest
        self._grammars[key] = why
        return why

    def generate(self, request: Request) -> AsyncIterator[Event]:
        """Submit the turn now (its place among waiting turns is taken by this call, not by the first read) and
        return its events."""
        loop = asyncio.get_running_loop()
        job = Job(request, self.outboxes.of(loop), asyncio.Queue(), self.clock(), self.clock)

        def cancelled() -> None:
            # Still in the queue: end it now rather than when the worker gets to it.
            with self.inbox.lock:
                if job.state != "queued":
                    return
                job.state = "abandoned"
            loop.call_soon_threadsafe(job.out.put_nowait, Finish("cancelled", queue_ms=job.queue_ms()))

        request.cancel.on_set(cancelled)
        if request.cancel.is_set():  # cancelled before it was even submitted
            cancelled()
        self.inbox.jobs.put(job)
        return events(job)
