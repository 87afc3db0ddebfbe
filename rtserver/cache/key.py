"""What makes two turns the same turn, and which turns may be answered from the cache.

The key hashes everything that decides the reply: the model's identity, the messages the prompt is rendered
from (the persona or card text as the system message, the history along the head path, the user's line), whether
the last reply is continued, and every sampling parameter (temperature, top_p, seed, max_tokens, stop, the
grammar a schema became). Priority is left out: it orders turns, it does not change them. Seed and top_p stay in
even at temperature 0, where llama.cpp ignores them, so the key is exact for any engine (the scripted one is not
greedy at temperature 0).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import msgpack

from ..engine.base import FinishReason, Request

KEY_VERSION = 1  # bump when the key's fields change: old entries are then never matched


@dataclass(frozen=True)
class Reply:
    """A finished reply as it streamed: its deltas (kept apart so a hit streams like the live one) and why it
    ended (``stop`` or ``length``: only complete replies are cached)."""

    deltas: tuple[str, ...]
    reason: FinishReason

    def encode(self) -> bytes:
        return msgpack.packb([KEY_VERSION, list(self.deltas), self.reason], use_bin_type=True)  # type: ignore[no-any-return]

    @staticmethod
    def decode(raw: bytes) -> Reply | None:
        """The reply, or None for bytes this version did not write (a stale or foreign entry is a miss)."""
        try:
            version, deltas, reason = msgpack.unpackb(raw, raw=False)
        except (ValueError, TypeError, msgpack.UnpackException):
            return None
        if version != KEY_VERSION or reason not in ("stop", "length") or not all(isinstance(d, str) for d in deltas):
            return None
        return Reply(tuple(deltas), reason)


def cacheable(kind: str, request: Request, opt: bool | None) -> bool:
    """``regenerate`` asks for a new alternative and ``params.cache: false`` opts out; otherwise only deterministic
    turns (temperature 0, or a seed) unless the session or turn opted in with ``params.cache: true``."""
    if kind == "regenerate" or opt is False:
        return False
    return opt is True or request.temperature <= 0 or request.seed is not None


def turn_key(model_id: str, request: Request) -> str:
    """A hex digest of everything that decides the reply (the module docstring says what)."""
    fields = [
        KEY_VERSION,
        model_id,
        [[m.role, m.content] for m in request.messages],
        request.continue_last,
        float(request.temperature),
        float(request.top_p),
        request.seed,
        request.max_tokens,
        list(request.stop),
        request.grammar,
    ]
    return hashlib.sha256(msgpack.packb(fields, use_bin_type=True)).hexdigest()[:40]
