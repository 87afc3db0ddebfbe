"""The engine interface: one small protocol that the llama.cpp engine and the scripted engine implement.

``generate`` takes a ``Request`` and yields ``Token``s, then exactly one ``Finish``. Setting
``request.cancelled`` stops it within one decode step.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


class CancelFlag(threading.Event):
    """A cancel signal the engine thread polls between decode steps; ``on_set`` callbacks let an engine end a
    turn that is still waiting in its queue at once, instead of when the worker reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self._callbacks: list[Callable[[], None]] = []

    def on_set(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def set(self) -> None:
        if not self.is_set():
            super().set()
            for callback in self._callbacks:
                callback()


@dataclass
class Request:
    key: str  # the session id: the engine keeps that session's KV under it
    messages: list[Message]
    continue_last: bool = False  # extend the last assistant message instead of starting a new one
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int | None = None
    max_tokens: int = 256
    stop: list[str] = field(default_factory=list)
    grammar: str | None = None  # GBNF constraining the reply (from a JSON schema: engine/grammar.py)
    priority: int = 0  # among turns waiting for an engine place, higher goes first; equal ones in arrival order
    # Storytellers' samplers, llama.cpp's own; each value here turns its sampler off.
    top_k: int = 0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64  # the tokens the penalties look back over (-1: the whole context)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    cancel: CancelFlag = field(default_factory=CancelFlag)


@dataclass(frozen=True)
class Token:
    text: str


@dataclass(frozen=True)
class Finish:
    reason: FinishReason
    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt tokens whose KV was already held (not prefilled again)
    completion_tokens: int = 0
    queue_ms: float = 0.0
    error: str | None = None


Event = Token | Finish


class Engine(Protocol):
    name: str
    capacity: int  # turns it runs at once; admission (rtserver/admission.py) queues or refuses the rest

    def generate(self, request: Request) -> AsyncIterator[Event]: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def stats(self) -> dict[str, int]: ...

    def grammar_error(self, grammar: str) -> str | None:
        """Why this GBNF grammar cannot constrain a reply, or None if it can."""
        ...
