"""The llama.cpp engine's settings, in one object built once (``server.make_engines`` reads them from Settings)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class EngineConfig:
    name: str = "default"  # the model's name, in logs and the worker thread's name
    n_ctx: int = 2048  # tokens per sequence (capped at the model's training context)
    slots: int = 4  # sequences: sessions whose KV stays in the context, turns decoded at once
    n_threads: int | None = None  # llama.cpp threads; None: every core
    n_batch: int = 256  # tokens one decode step may hold
    prefill_chunk: int = 128  # prompt tokens per step beside the generating turns' next tokens
    host_budget_mb: int = 256  # host memory for KV saved from the context (evicted, parked); 0: none
    flash_attn: str = "off"  # "off", "on" or "auto"; off is faster on CPU (docs/adr/0005-engine-rooms.md)
    cache_types: tuple[str, str] = ("q8_0", "f16")  # (keys, values), as settings.CACHE_TYPES names them
    decode_ahead: bool = True  # decode the next turn's template opening when a reply ends
    save_ahead: bool = True  # copy idle sessions' KV to host memory while there is nothing to do
    restore_ahead: bool = True  # put back the KV of the session due next while there is nothing to do
    prefill_first: bool = True  # a new turn's prompt goes in a step of its own, before the others' next tokens
    time_slice: int = 4  # tokens a running turn generates before a waiting turn may take its sequence; 0: off

    @property
    def threads(self) -> int:
        return self.n_threads or os.cpu_count() or 2

    @property
    def chunk(self) -> int:
        """Prompt tokens per step: never more than a batch holds."""
        return min(self.prefill_chunk, self.n_batch)

    @property
    def host_budget(self) -> int:
        return self.host_budget_mb * 1024 * 1024
