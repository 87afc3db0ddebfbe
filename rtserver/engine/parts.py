"""What the worker thread's rooms share, built once when the model loads (``LlamaEngine.load``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .config import EngineConfig
from .kv import KV
from .model import Context, Model
from .notes import SessionNotes
from .outbox import Outboxes
from .planner import Planner


@dataclass(frozen=True)
class Parts:
    config: EngineConfig
    model: Model
    context: Context
    kv: KV
    planner: Planner
    notes: SessionNotes
    outboxes: Outboxes
    counters: dict[str, int]  # the engine's counters (LlamaEngine.stats), updated in place
    clock: Callable[[], float]
