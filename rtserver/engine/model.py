"""Loading a GGUF model and creating the llama.cpp context the engine decodes in.

``Model`` is the tokenizer, detokenizer, chat template and metadata; ``Context`` is one llama.cpp context with a
non-unified KV of ``slots`` sequences, its batch, and the per-sequence state calls that copy a sequence's KV.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llama_cpp as C
import structlog

from ..errors import ConfigError, EngineError
from .config import EngineConfig
from .prompt import ChatTemplate

log = structlog.get_logger("rtserver.engine")
# ggml's type ids (ggml.h) of the KV cache types settings.CACHE_TYPES names; llama-cpp-python lacks some (BF16)
GGML_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "bf16": 30}
FLASH_ATTN = {
    "auto": C.LLAMA_FLASH_ATTN_TYPE_AUTO,
    "on": C.LLAMA_FLASH_ATTN_TYPE_ENABLED,
    "off": C.LLAMA_FLASH_ATTN_TYPE_DISABLED,
}


def _ignore_log(level: int, text: bytes, user_data: Any) -> None:
    return None


_quiet_log = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)(_ignore_log)
_backend_ready = False


def init_backend() -> None:
    """Once per process: llama.cpp's backend, with its log silenced (the server logs JSON)."""
    global _backend_ready
    if not _backend_ready:
        C.llama_log_set(_quiet_log, ctypes.c_void_p(0))
        C.llama_backend_init()
        _backend_ready = True


@contextlib.contextmanager
def stderr_silenced() -> Iterator[None]:
    """File descriptor 2 goes to /dev/null meanwhile. llama.cpp's grammar parser prints a grammar it refuses, whole,
    to stderr: a client's grammar does not belong in the server's log, and a pipe nobody drains would block the
    event loop. Used only around that parse, on the event loop's thread, which logs nothing meanwhile."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no stderr to silence (closed by a daemonizer)
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class Model:
    """A loaded GGUF: tokenizer, detokenizer, chat template and metadata."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise ConfigError(f"model file {path} does not exist; point --model at a .gguf file")
        init_backend()
        params = C.llama_model_default_params()
        self.ptr = C.llama_model_load_from_file(str(path).encode(), params)
        if not self.ptr:
            raise ConfigError(f"llama.cpp could not load {path}: is it a GGUF model file?")
        self.path = path
        self.vocab = C.llama_model_get_vocab(self.ptr)
        self.n_ctx_train = C.llama_model_n_ctx_train(self.ptr)
        self.n_vocab = C.llama_vocab_n_tokens(self.vocab)
        self.template = ChatTemplate(self.meta("tokenizer.chat_template"))
        self._piece = ctypes.create_string_buffer(256)
        # Per-token answers cached: each is a call into llama.cpp, and a prompt walks hundreds of tokens a turn.
        self._pieces: tuple[dict[int, bytes], dict[int, bytes]] = ({}, {})
        self._boundaries: dict[int, bool] = {}
        self._eog: dict[int, bool] = {}
        self._control_bias: Any = None

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(65536)
        n = C.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace") if n >= 0 else None

    def tokenize(self, text: str) -> list[int]:
        return self.tokenize_bytes(text.encode())

    def tokenize_bytes(self, data: bytes) -> list[int]:
        cap = len(data) + 8
        arr = (C.llama_token * cap)()
        n = C.llama_tokenize(self.vocab, data, len(data), arr, cap, False, True)
        if n < 0:
            raise EngineError(f"tokenizer needed {-n} tokens")
        return list(arr[:n])

    def piece(self, token: int, special: bool = False) -> bytes:
        known = self._pieces[special]
        if (piece := known.get(token)) is None:
            # Both spellings at once: a sampled token's text is asked for as it streams, and again with control
            # tokens spelled out when the next prompt is matched against the sequence (planner.tokenize).
            for kind, pieces in zip((False, True), self._pieces, strict=True):
                n = C.llama_token_to_piece(self.vocab, token, self._piece, len(self._piece), 0, kind)
                pieces[token] = self._piece.raw[:n] if n > 0 else b""
            piece = known[token]
        return piece

    def pieces(self, tokens: list[int]) -> list[bytes]:
        """Each token's text, control tokens spelled out."""
        try:
            return list(map(self._pieces[True].__getitem__, tokens))
        except KeyError:
            return [self.piece(t, True) for t in tokens]

    def splits_after(self, token: int) -> bool:
        """Whether text after this token is tokenized the same alone: llama.cpp tokenizes the text between control
        tokens piece by piece (one that strips the whitespace after it is left out)."""
        if (splits := self._boundaries.get(token)) is None:
            attr = C.llama_vocab_get_attr(self.vocab, token)
            splits = self._boundaries[token] = bool(attr & C.LLAMA_TOKEN_ATTR_CONTROL) and not (
                attr & C.LLAMA_TOKEN_ATTR_RSTRIP
            )
        return splits

    def is_eog(self, token: int) -> bool:
        """Whether the token ends a reply (asked for every sampled token, so cached)."""
        if (eog := self._eog.get(token)) is None:
            eog = self._eog[token] = bool(C.llama_vocab_is_eog(self.vocab, token))
        return eog

    def control_bias(self) -> tuple[int, Any]:
        """Logit biases that rule out the control tokens other than the end of a reply (ChatML's ``<|im_start|>``...),
        for replies under a grammar: llama.cpp's grammar reads a control token as its spelled text, so one could
        stand inside a JSON string while the reply sent leaves it out (made once, then kept)."""
        if self._control_bias is None:
            ids = [
                t
                for t in range(self.n_vocab)
                if C.llama_vocab_get_attr(self.vocab, t) & C.LLAMA_TOKEN_ATTR_CONTROL and not self.is_eog(t)
            ]
            self._control_bias = (C.llama_logit_bias * len(ids))(*(C.llama_logit_bias(t, -math.inf) for t in ids))
        return len(self._control_bias), self._control_bias

    def close(self) -> None:
        if self.ptr:
            C.llama_model_free(self.ptr)
            self.ptr = None


class Context:
    """One llama.cpp context: ``slots`` sequences of ``n_ctx_seq`` tokens each, in a KV split per sequence
    (``kv_unified=False``: a sequence's output does not depend on which others share its batch)."""

    def __init__(self, model: Model, config: EngineConfig) -> None:
        self.n_ctx_seq = n_ctx = min(config.n_ctx, model.n_ctx_train or config.n_ctx)
        p = C.llama_context_default_params()
        p.n_ctx = n_ctx * config.slots  # non-unified KV: each sequence gets n_ctx / n_seq_max cells
        p.n_batch = p.n_ubatch = config.n_batch
        p.n_seq_max = config.slots
        p.n_threads = p.n_threads_batch = config.threads
        p.kv_unified = False
        p.flash_attn_type = FLASH_ATTN[config.flash_attn]
        p.type_k, p.type_v = (GGML_TYPES[kind] for kind in config.cache_types)
        p.no_perf = True
        self.ptr = C.llama_init_from_model(model.ptr, p)
        if not self.ptr:
            raise ConfigError(f"llama.cpp could not create a context of {p.n_ctx} tokens for {model.path}")
        self.mem = C.llama_get_memory(self.ptr)
        self.can_shift = bool(C.llama_memory_can_shift(self.mem)) and _keys_can_shift(model, config)
        self.batch = b = C.llama_batch_init(config.n_batch, 0, 1)
        # The batch's arrays, looked up once (each attribute access makes a new ctypes pointer object).
        self.arrays = (b.token, b.pos, b.n_seq_id, [b.seq_id[i] for i in range(config.n_batch)], b.logits)

    def seq_state(self, seq: int, limit: int | None = None) -> Any:
        """A sequence's KV as llama.cpp's per-sequence state (a ctypes byte array), or None if llama.cpp cannot
        write it or it is larger than ``limit`` bytes."""
        size = C.llama_state_seq_get_size(self.ptr, seq)
        if limit is not None and size > limit:
            return None
        buf = (ctypes.c_uint8 * size)()
        written = C.llama_state_seq_get_data(self.ptr, buf, size, seq)
        return (ctypes.c_uint8 * written).from_buffer(buf) if written else None

    def set_state(self, seq: int, data: Any) -> bool:
        """Load a state from ``seq_state`` into ``seq``; False if llama.cpp refuses it."""
        return bool(C.llama_state_seq_set_data(self.ptr, data, len(data), seq) == len(data))

    def close(self) -> None:
        if self.ptr is not None:
            C.llama_batch_free(self.batch)
            C.llama_free(self.ptr)
            self.ptr = None


def _keys_can_shift(model: Model, config: EngineConfig) -> bool:
    """Whether llama.cpp can re-rotate this cache's keys for a context shift. Quantized keys shift only where it
    rotates them with a Hadamard matrix (heads of a multiple of 64 dimensions; elsewhere it crashes), and its CPU
    backend cannot rotate bf16 keys (docs/adr/0005-engine-rooms.md). Without a shift a story longer than the
    context is cut to half of it when it fills up (planner.Planner.prompt)."""
    kind = config.cache_types[0]
    if kind in ("f16", "f32"):
        return True
    head = int(model.meta(f"{model.meta('general.architecture')}.attention.key_length") or 0)
    head = head or C.llama_model_n_embd(model.ptr) // max(1, C.llama_model_n_head(model.ptr))
    rotation_off = os.environ.get("LLAMA_ATTN_ROT_DISABLE", "0") not in ("", "0")
    can = kind != "bf16" and head % 64 == 0 and not rotation_off
    if not can:
        log.info(
            "no_context_shift",
            model=config.name,
            cache_type_k=kind,
            head_size=head,
            hint="llama.cpp cannot shift these keys: a story longer than n_ctx is cut to half of it when it "
            "fills up, and what is kept prefilled again; cache_type_k = f16 keeps the context shift",
        )
    return can
