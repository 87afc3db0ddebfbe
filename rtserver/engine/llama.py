"""The llama.cpp engine, on llama-cpp-python's low-level batch API.

One llama.cpp context with ``kv_unified=False`` and ``slots`` sequences; each active session owns a sequence and
keeps its KV between turns, so a returning session prefills only the tokens it does not already hold (the
longest common prefix is kept, the rest removed with ``llama_memory_seq_rm``). When every sequence is taken, the
least recently used idle session's sequence is cleared and reused.

Turns of different sessions run together (continuous batching): each step decodes one batch holding the next
token of every generating sequence and a bounded chunk of prompt tokens of those prefilling; turns join and
leave between steps. With a non-unified KV each sequence's output does not depend on which others share its
batch; the batch lists sequences by id and the running ones are kept on consecutive ids, which llama.cpp decodes
in one pass (``_compact``). When a reply ends, the template tokens that open the session's next turn are decoded
ahead of its line (``_ahead_of_next_turn``). A turn that finds every sequence generating waits for one to free
(``Finish.queue_ms``); waiting turns start highest ``priority`` first, equal priorities in arrival order.

All llama.cpp calls happen on one worker thread (a llama.cpp context is not thread-safe; ``llama_decode``
releases the GIL, so the event loop stays responsive). A step's events reach the event loop together, with one
wake-up (``_Outbox``).
"""

from __future__ import annotations

import asyncio
import bisect
import codecs
import contextlib
import ctypes
import hashlib
import math
import os
import queue
import random
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llama_cpp as C
import structlog

from ..errors import ConfigError, EngineError
from .base import Event, Finish, FinishReason, Message, Request, Token
from .prompt import ChatTemplate, StopMatcher


def _ignore_log(level: int, text: bytes, user_data: Any) -> None:
    return None


_quiet_log = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)(_ignore_log)


_backend_ready = False
_NEXT_LINE = "\ue000"  # stands for the next user line when rendering what will precede it (private use)
log = structlog.get_logger("rtserver.engine")
# ggml's type ids (ggml.h) of the KV cache types settings.CACHE_TYPES names; llama-cpp-python lacks some (BF16)
GGML_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "bf16": 30}
MIN_SHARED_PREFIX = 16  # tokens another sequence must hold beyond our own before copying its KV pays


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """File descriptor 2 goes to /dev/null for the duration. llama.cpp's grammar parser writes a grammar it
    refuses to stderr whole (llama-grammar.cpp, ``parse``): a client's bad grammar (up to a frame) or a schema's
    (tens of KB) would land in the server's JSON log, and with nobody reading that pipe block the event loop
    there (seen: a test server that stopped answering). Used only around that parse, on the event loop's thread,
    which logs nothing meanwhile."""
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


def _init_backend() -> None:
    global _backend_ready
    if not _backend_ready:
        C.llama_log_set(_quiet_log, ctypes.c_void_p(0))
        C.llama_backend_init()
        _backend_ready = True


class Model:
    """A loaded GGUF: tokenizer, detokenizer, chat template and metadata."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise ConfigError(f"model file {path} does not exist; point --model at a .gguf file")
        _init_backend()
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
        # Detokenizing is a call into llama.cpp per token; a prompt walks hundreds of them each turn (_prompt).
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
            # tokens spelled out when the next turn's prompt is matched against the sequence (_tokenize), where
            # a miss cost a call into llama.cpp per token of the whole history, on the way to a first delta.
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
        """Whether the token ends a reply (asked once per token: every sampled token is checked)."""
        if (eog := self._eog.get(token)) is None:
            eog = self._eog[token] = bool(C.llama_vocab_is_eog(self.vocab, token))
        return eog

    def control_bias(self) -> tuple[int, Any]:
        """Logit biases that rule out the control tokens other than the end of a reply (ChatML's
        ``<|im_start|>``...), for replies under a grammar: llama.cpp's grammar reads a control token as its spelled
        text, so one could stand inside a JSON string while the reply sent leaves it out (made once, then kept)."""
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


@dataclass
class _Slot:
    seq: int
    tokens: list[int] = field(default_factory=list)  # what this sequence's KV holds, in order


_sched_yield: Callable[[], None] = getattr(os, "sched_yield", lambda: None)  # not on every platform


class _Outbox:
    """Events from the worker thread to one event loop, handed over once per step. The worker queues a step's
    events and then wakes the loop with one byte down a pipe the loop watches, written without the GIL (os.write
    releases it), so that the woken loop can run at once. One ``call_soon_threadsafe`` per event held the GIL
    while it woke the loop: on one core the loop woke, found the GIL taken and slept again (bench/token_path.py:
    the loop thread switched 3.2 times a token, now 1.3)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.events: deque[tuple[asyncio.Queue[Event], Event]] = deque()
        self._woken = False  # a wake-up is on its way and has not been handled yet
        self._rfd, self._wfd = os.pipe()
        os.set_blocking(self._rfd, False)
        os.set_blocking(self._wfd, False)
        try:
            loop.add_reader(self._rfd, self._deliver)
            self._piped = True
        except NotImplementedError:  # a loop that cannot watch a pipe (Windows' proactor): wake it the usual way
            self._piped = False

    def put(self, out: asyncio.Queue[Event], event: Event) -> None:
        self.events.append((out, event))

    def wake(self) -> bool:
        """The worker, after a step: wake the loop if there is anything to deliver (unless a wake-up is on its
        way); whether there is."""
        if not self.events:
            return False
        if self._woken:
            return True
        self._woken = True
        if not self._piped:
            self.loop.call_soon_threadsafe(self._deliver)
            return True
        try:
            os.write(self._wfd, b"\0")
        except BlockingIOError:  # the pipe is full of wake-ups already
            pass
        return True

    def _deliver(self) -> None:
        if self._piped:
            try:
                os.read(self._rfd, 4096)
            except BlockingIOError:
                pass
        self._woken = False  # before taking the events: one queued after this wakes the loop again
        events = self.events
        while events:
            out, event = events.popleft()
            out.put_nowait(event)

    def close(self) -> None:
        if self._piped and not self.loop.is_closed():
            self.loop.remove_reader(self._rfd)
        os.close(self._rfd)
        os.close(self._wfd)


@dataclass
class _Job:
    request: Request
    outbox: _Outbox
    out: asyncio.Queue[Event]
    submitted: float
    state: str = "queued"  # queued -> running (worker) or abandoned (cancelled while queued); under the lock

    def emit(self, event: Event) -> None:
        self.outbox.put(self.out, event)

    def queue_ms(self) -> float:
        return (time.perf_counter() - self.submitted) * 1000

    def order(self) -> tuple[int, float]:
        """Waiting turns start in this order: highest priority first, then first come, first served."""
        return (-self.request.priority, self.submitted)


@dataclass(eq=False)
class _Seq:
    """A turn the worker is running: prefilling ``todo``, then generating one token per step."""

    job: _Job
    slot: _Slot
    sampler: Any
    stop: StopMatcher
    prompt_len: int
    reused: int
    todo: list[int]  # prompt tokens not yet decoded
    queue_ms: float
    emitted_upto: int  # KV length whose text has fully reached the client
    text: bytes | None  # the prompt's text, which the prompt's tokens spell (None: the newest turn alone was cut)
    cut: int  # the oldest turns the prompt leaves out (after the persona) to fit the context
    next_token: int | None = None  # sampled and sent, decoded with the next batch
    produced: int = 0
    slice_from: int = 0  # ``produced`` when it last took a sequence (see LlamaEngine.time_slice)
    lead: _Seq | None = None  # a turn prefilling the prefix this one shares with it: wait, then copy (_follow)
    lead_len: int = 0  # how much of that prefix it must hold first
    reply: list[str] = field(default_factory=list)  # the text sent
    utf8: codecs.IncrementalDecoder = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))


class LlamaEngine:
    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int = 2048,
        slots: int = 4,
        n_threads: int | None = None,
        n_batch: int = 256,
        prefill_chunk: int = 128,
        host_budget_mb: int = 256,
        flash_attn: str = "off",
        cache_types: tuple[str, str] = ("q8_0", "f16"),
        decode_ahead: bool = True,
        save_ahead: bool = True,
        restore_ahead: bool = True,
        prefill_first: bool = True,
        time_slice: int = 4,
        name: str = "default",
    ) -> None:
        self.path, self.name = path, name
        self.n_ctx_seq, self.n_slots, self.n_batch = n_ctx, slots, n_batch
        self.capacity = slots  # turns decoded at once
        self.prefill_chunk = min(prefill_chunk, n_batch)
        self.decode_ahead, self.save_ahead, self.prefill_first = decode_ahead, save_ahead, prefill_first
        self.restore_ahead = restore_ahead
        self._prefilled_last = False  # the last step was prompts alone (prefill_first): the next is the others'
        self.time_slice = time_slice
        self.n_threads = n_threads or os.cpu_count() or 2
        self.flash_attn = {
            "auto": C.LLAMA_FLASH_ATTN_TYPE_AUTO,
            "on": C.LLAMA_FLASH_ATTN_TYPE_ENABLED,
            "off": C.LLAMA_FLASH_ATTN_TYPE_DISABLED,
        }[flash_attn]
        self.cache_types = cache_types  # (keys, values), as settings.CACHE_TYPES names them
        self.model: Model | None = None
        self.ctx: Any = None
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._outboxes: dict[asyncio.AbstractEventLoop, _Outbox] = {}  # one per event loop submitting turns
        self._to_wake: tuple[_Outbox, ...] = ()  # the same, as the worker reads them after each step
        self._lock = threading.Lock()
        self.idle = threading.Event()  # set while the worker has nothing to do and waits for a turn
        self._thread: threading.Thread | None = None
        self._slots: OrderedDict[str, _Slot] = OrderedDict()  # session key -> slot, least recently used first
        # Evicted sessions' KV, least recently evicted first: key -> (llama_state_seq data as the ctypes array
        # llama.cpp wrote, handed back to it as it is; the tokens it holds)
        self._host: OrderedDict[str, tuple[Any, list[int]]] = OrderedDict()
        self._host_bytes = 0
        self._parked: set[str] = set()  # of those, turns in progress: their KV is never dropped for the budget
        # Copies of idle sessions' KV still in the context, made while the engine had nothing to do, so that the
        # one evicted next need not be saved on the way to a turn (see _save_ahead). Within the same budget.
        self._copies: dict[str, tuple[Any, list[int]]] = {}
        self._copies_bytes = 0
        self._decode_s = self._park_s = 0.0
        self.host_budget = host_budget_mb * 1024 * 1024
        self._free = list(range(slots))
        # Sessions whose turn ended, with the chat template's tokens that will open their next turn, still to be
        # decoded (see _ahead_of_next_turn).
        self._ahead: dict[str, list[int]] = {}
        # When each session's last turn ended, and its pace: the time from a turn's end to its next line, averaged
        # (see _restore_ahead). Kept for the sessions whose KV the engine holds, in the context or in host memory.
        self._ended_at: dict[str, float] = {}
        self._pace: dict[str, float] = {}
        # Sessions whose story has outgrown the context: how many of the oldest turns their last prompt left out,
        # where the next prompt's search starts (_prompt). Kept, and forgotten, with the pace.
        self._cuts: dict[str, int] = {}
        self._grammars: dict[bytes, str | None] = {}  # grammar's digest -> why llama.cpp refuses it, or None
        self.counters = {
            "prefilled_tokens": 0,
            "reused_tokens": 0,
            "generated_tokens": 0,
            "turns": 0,
            "evictions": 0,
            "shared_prefix_tokens": 0,
            "shared_prefix_waits": 0,  # turns that waited for another turn to prefill the prefix they share
            "text_matched_tokens": 0,
            "context_shifts": 0,
            "shifted_out_tokens": 0,
            "kv_saved": 0,
            "kv_restored": 0,
            "kv_dropped": 0,
            "kv_saved_ahead": 0,  # idle sessions' KV copied to host memory while the engine had nothing to do
            "kv_saved_ahead_used": 0,  # evictions that kept such a copy instead of saving the KV then
            "kv_restored_ahead": 0,  # sessions' KV put back in the context before their next line, by their pace
            "peak_batch_sequences": 0,
            "steps": 0,  # llama_decode calls
            "prefill_first_steps": 0,  # of which prompts alone, while other turns' next tokens waited a step
            "split_steps": 0,  # of which the batch's sequence ids were not one run (more than one pass)
            "kv_moves": 0,  # sequences' KV moved to keep the generating ones on consecutive ids
            "ahead_tokens": 0,  # template tokens of a next turn decoded before its text came
            "preemptions": 0,  # generating turns parked in host memory to let another turn take their sequence
            "decode_ms": 0,  # time in llama_decode
            "park_ms": 0,  # time parking turns' KV in host memory and putting it back
            "waiting_turns": 0,  # now: turns waiting for a sequence to free
            "parked_turns": 0,  # now: turns in progress whose KV is parked in host memory
        }

    # --- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self._load)
        self._thread = threading.Thread(target=self._run, name=f"engine-{self.name}", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        self.model = Model(self.path)
        n_ctx = min(self.n_ctx_seq, self.model.n_ctx_train or self.n_ctx_seq)
        self.n_ctx_seq = n_ctx
        p = C.llama_context_default_params()
        p.n_ctx = n_ctx * self.n_slots  # non-unified KV: each sequence gets n_ctx / n_seq_max cells
        p.n_batch = self.n_batch
        p.n_ubatch = self.n_batch
        p.n_seq_max = self.n_slots
        p.n_threads = p.n_threads_batch = self.n_threads
        p.kv_unified = False
        # On CPU, llama.cpp's flash-attention path made a 28-token prefill cost 8 ms at 28 tokens of context and
        # 33 ms at 224; without it, 6.6 ms flat (docs/benchmarks.md). Off by default; "auto" suits GPU builds.
        p.flash_attn_type = self.flash_attn
        p.type_k, p.type_v = (GGML_TYPES[kind] for kind in self.cache_types)
        p.no_perf = True
        self.ctx = C.llama_init_from_model(self.model.ptr, p)
        if not self.ctx:
            raise ConfigError(f"llama.cpp could not create a context of {p.n_ctx} tokens for {self.path}")
        self._mem = C.llama_get_memory(self.ctx)
        self._can_shift = bool(C.llama_memory_can_shift(self._mem)) and self._keys_can_shift()
        self._batch = b = C.llama_batch_init(self.n_batch, 0, 1)
        # The batch's arrays, looked up once (each attribute access makes a new ctypes pointer object).
        self._b = (b.token, b.pos, b.n_seq_id, [b.seq_id[i] for i in range(self.n_batch)], b.logits)

    def _keys_can_shift(self) -> bool:
        """Whether llama.cpp can re-rotate this cache's keys for a context shift. It crashes (a null pointer in
        llama_kv_cache::build_rope_shift, llama-cpp-python 0.3.36) shifting quantized keys unless it rotates them
        with a Hadamard matrix, which it does only for heads of a multiple of 64 dimensions (not the bundled
        model's 32); its CPU backend cannot rotate bf16 keys at all. Without a shift a story longer than the
        context still goes on: it is cut to half the context when it fills up, and that half prefilled again
        (_prompt)."""
        assert self.model is not None
        kind = self.cache_types[0]
        if kind in ("f16", "f32"):
            return True
        head = int(self.model.meta(f"{self.model.meta('general.architecture')}.attention.key_length") or 0)
        head = head or C.llama_model_n_embd(self.model.ptr) // max(1, C.llama_model_n_head(self.model.ptr))
        rotation_off = os.environ.get("LLAMA_ATTN_ROT_DISABLE", "0") not in ("", "0")
        can = kind != "bf16" and head % 64 == 0 and not rotation_off
        if not can:
            log.info(
                "no_context_shift",
                model=self.name,
                cache_type_k=kind,
                head_size=head,
                hint="llama.cpp cannot shift these keys: a story longer than n_ctx is cut to half of it when it "
                "fills up, and what is kept prefilled again; cache_type_k = f16 keeps the context shift",
            )
        return can

    async def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        for outbox in self._outboxes.values():
            outbox.close()
        self._outboxes.clear()
        self._to_wake = ()
        if self.ctx is not None:
            C.llama_batch_free(self._batch)
            C.llama_free(self.ctx)
            self.ctx = None
        if self.model is not None:
            self.model.close()

    def stats(self) -> dict[str, int]:
        return dict(self.counters)

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
        with _stderr_silenced():  # llama.cpp prints a grammar it refuses, all of it, to stderr
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

    # --- the async face -------------------------------------------------------------------------------------

    def generate(self, request: Request) -> AsyncIterator[Event]:
        """Submit the turn now (its place among waiting turns is taken by this call, not by the first read) and
        return its events."""
        loop = asyncio.get_running_loop()
        if (outbox := self._outboxes.get(loop)) is None:
            outbox = self._outboxes[loop] = _Outbox(loop)
            self._to_wake = tuple(self._outboxes.values())  # replaced whole: the worker never sees it change
        job = _Job(request, outbox, asyncio.Queue(), time.perf_counter())

        def cancelled() -> None:
            # Still in the queue: end it now rather than when the worker gets to it.
            with self._lock:
                if job.state != "queued":
                    return
                job.state = "abandoned"
            loop.call_soon_threadsafe(job.out.put_nowait, Finish("cancelled", queue_ms=job.queue_ms()))

        request.cancel.on_set(cancelled)
        if request.cancel.is_set():  # cancelled before it was even submitted
            cancelled()
        self._jobs.put(job)
        return self._events(job)

    @staticmethod
    async def _events(job: _Job) -> AsyncIterator[Event]:
        try:
            while True:
                event = await job.out.get()
                yield event
                if isinstance(event, Finish):
                    return
        finally:
            job.request.cancel.set()  # a consumer that stops listening stops the generation too

    # --- the worker thread: continuous batching -----------------------------------------------------------
    #
    # Each step builds one llama.cpp batch: the next token of every sequence that is generating, then prompt
    # tokens of sequences that are prefilling, up to ``prefill_chunk`` of them (so a long prompt does not stall
    # the others' streams for long). New turns join between steps and finished ones leave; a turn that finds
    # every sequence busy waits (its wait is Finish.queue_ms), in priority order.
    #
    # Time slicing (``time_slice`` tokens): when there are more turns than sequences, a turn waiting to start
    # takes the sequence of a running turn that has generated ``time_slice`` tokens since it took it. That turn's
    # KV parks in host memory, as an idle session's does, and it resumes where it was when its turn comes again:
    # turns waiting to start first, then parked turns (highest priority, then first parked). Under overload a player's
    # line starts within a step or two instead of after the replies ahead of it have ended; the replies under
    # way stream more slowly, and throughput falls a little (2-11 % in docs/benchmarks.md; a park and its resume
    # cost ~1.3 ms for a 5 MB KV there, `park_ms`).

    def _run(self) -> None:
        active: list[_Seq] = []
        parked: list[_Seq] = []  # turns under way whose KV is in host memory: highest priority, then parked first
        waiting: list[_Job] = []  # ordered by _Job.order
        while True:
            if not active and not waiting and not parked:
                self._wake()  # what the last step or _admit emitted (a turn that failed to start)
                while self._jobs.empty() and (self._save_ahead() or self._restore_ahead()):
                    pass
                self.idle.set()
                job = self._jobs.get()  # idle: block until there is work
                self.idle.clear()
                if job is None:
                    return
                waiting.append(job)
            while not self._jobs.empty():  # take everything submitted meanwhile
                if (job := self._jobs.get()) is None:
                    return
                bisect.insort(waiting, job, key=_Job.order)
            if waiting or parked:
                self._admit(waiting, parked, active)
                self.counters["waiting_turns"] = len(waiting)
                self.counters["parked_turns"] = len(parked)
                self.counters["park_ms"] = round(self._park_s * 1000)
            if active or self._ahead:
                self.counters["peak_batch_sequences"] = max(self.counters["peak_batch_sequences"], len(active))
                self._step(active)

    def _admit(self, waiting: list[_Job], parked: list[_Seq], active: list[_Seq]) -> None:
        """Start waiting turns, then resume parked ones, while there is a sequence to run them on: a free one, an
        idle session's, or (time slicing) a running turn's that has had its slice."""
        for q in [q for q in parked if q.job.request.cancel.is_set()]:
            self._cancel_parked(q, parked)
        busy = {q.job.request.key for q in active}
        while waiting:
            job = waiting[0]
            if job.state == "abandoned":
                waiting.pop(0)
                continue
            self._ahead.pop(job.request.key, None)  # what it had left is now the start of its prompt
            slot = self._slot(job.request.key, busy)
            if slot is None:
                if self._preempt(active, parked, busy, job.request.priority):
                    continue
                return  # every sequence is generating: the first in order starts when one frees
            waiting.pop(0)
            with self._lock:  # from here on a cancel is the decoder's to honour, within a step
                if job.state == "abandoned":
                    continue
                job.state = "running"
            self._keep_pace(job)
            busy.add(job.request.key)
            try:
                q = self._start(job, slot)
                self._follow(q, active)
                active.append(q)
            except Exception as exc:  # a bad prompt ends this turn, never the engine
                self._drop(job.request.key)
                job.emit(Finish("error", queue_ms=job.queue_ms(), error=str(exc)[:200]))
        while parked:
            q = parked[0]
            t0 = time.perf_counter()
            slot = self._slot(q.job.request.key, busy)
            self._park_s += time.perf_counter() - t0
            if slot is None:
                if self._preempt(active, parked, busy, q.job.request.priority):
                    continue
                return
            parked.pop(0)
            self._resume(q, slot)
            busy.add(q.job.request.key)
            active.append(q)

    def _preempt(self, active: list[_Seq], parked: list[_Seq], busy: set[str], priority: int) -> bool:
        """Park the running turn furthest past its time slice, among those that have had one and do not outrank
        the turn that wants a sequence; False when there is none (or its KV cannot be kept)."""
        if not self.time_slice:
            return False
        done = [
            q
            for q in active
            if q.next_token is not None  # generating, not prefilling
            and q.produced - q.slice_from >= self.time_slice
            and q.job.request.priority <= priority
        ]
        if not done:
            return False
        q = max(done, key=lambda q: q.produced - q.slice_from)
        key = q.job.request.key
        t0 = time.perf_counter()
        saved = self._save(key, q.slot, parking=True)
        self._park_s += time.perf_counter() - t0
        if not saved:
            return False
        del self._slots[key]
        C.llama_memory_seq_rm(self._mem, q.slot.seq, -1, -1)
        self._free.append(q.slot.seq)
        active.remove(q)
        bisect.insort(parked, q, key=lambda q: -q.job.request.priority)  # after those parked before it
        busy.discard(key)
        self.counters["preemptions"] += 1
        return True

    def _resume(self, q: _Seq, slot: _Slot) -> None:
        """A parked turn goes on where it was, its KV restored into ``slot`` by ``_slot``; if llama.cpp refused the
        restore, what the sequence held is prefilled again, then its pending token."""
        held = q.slot.tokens
        q.slot, q.slice_from = slot, q.produced
        if slot.tokens != held:
            C.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)
            slot.tokens = []
            q.todo = held + ([q.next_token] if q.next_token is not None else [])
            q.next_token = None
            self.counters["prefilled_tokens"] += len(q.todo)

    def _cancel_parked(self, q: _Seq, parked: list[_Seq]) -> None:
        """A parked turn cancelled ends at once. Its session's saved KV stays, as an idle session's, counted only up
        to what reached the client: a restore removes the KV past the tokens it is listed with (``_start``)."""
        parked.remove(q)
        key = q.job.request.key
        self._parked.discard(key)
        if key in self._host:
            data, tokens = self._host[key]
            self._host[key] = (data, tokens[: q.emitted_upto])
        C.llama_sampler_free(q.sampler)
        self._ended(q, "cancelled")

    def _slot(self, key: str, busy: set[str]) -> _Slot | None:
        self._drop_copy(key)  # its turn changes its KV
        slot = self._slots.pop(key, None)
        if slot is None:
            # A session whose KV is not in the context takes a sequence next to the running ones, so that no KV has
            # to move for the batch to stay one run of ids (_compact): a free one there, else the least recently
            # used idle session's there, else any free one, else the least recently used idle session's.
            near = self._near({self._slots[k].seq for k in busy if k in self._slots})
            seq = next((i for i in near if i in self._free), None)
            if seq is None and not self._free:
                idle = [k for k in self._slots if k not in busy]
                if not idle:
                    return None
                victim = next((k for k in idle if self._slots[k].seq in near), idle[0])
                seq = self._slots[victim].seq
                self._evict(victim)
            seq = self._free[-1] if seq is None else seq
            self._free.remove(seq)
            slot = _Slot(seq)
            self._restore(key, slot)
        self._slots[key] = slot  # most recently used last
        return slot

    def _near(self, running: set[int]) -> list[int]:
        """Sequence ids where one more running sequence keeps the running ones one run: holes first, then the ends."""
        if not running:
            return []
        lo, hi = min(running), max(running)
        holes = [i for i in range(lo, hi) if i not in running]
        return holes + [i for i in (hi + 1, lo - 1) if 0 <= i < self.n_slots]

    def _evict(self, key: str) -> None:
        """Free the sequence of an idle session, keeping its KV in host memory (within the budget) so that its
        next turn restores it instead of prefilling the whole history again."""
        old = self._slots.pop(key)
        self._ahead.pop(key, None)
        self.counters["evictions"] += 1
        copy = self._drop_copy(key)
        if copy is not None and copy[1] == old.tokens:  # saved while the engine was idle, and still what it holds
            self.counters["kv_saved_ahead_used"] += 1
            kept = self._keep(key, *copy)
        else:
            kept = self._save(key, old)
        if kept:
            self.counters["kv_saved"] += 1
        C.llama_memory_seq_rm(self._mem, old.seq, -1, -1)
        self._free.append(old.seq)

    def _save(self, key: str, slot: _Slot, *, parking: bool = False) -> bool:
        """Keep a sequence's KV in host memory within the budget. Idle sessions' KV saved longest ago is dropped to
        make room (it is rebuilt by prefill when they return); a parked turn's never is, so a turn is parked only
        where it fits beside the others parked."""
        if not self.host_budget or not slot.tokens:
            return False
        state = self._seq_state(slot.seq, limit=self.host_budget)
        return state is not None and self._keep(key, state, list(slot.tokens), parking=parking)

    def _keep(self, key: str, state: Any, tokens: list[int], *, parking: bool = False) -> bool:
        """Hold a sequence's saved KV in host memory, making room within the budget: copies of sessions still in
        the context go first (they cost only a save when evicted), then the idle sessions' saved longest ago."""
        if parking:
            if sum(len(self._host[k][0]) for k in self._parked) + len(state) > self.host_budget:
                return False
            self._parked.add(key)
        self._host[key] = (state, tokens)
        self._host_bytes += len(state)
        while self._copies and self._host_bytes + self._copies_bytes > self.host_budget:
            self._drop_copy(next(iter(self._copies)))
        while self._host_bytes > self.host_budget:
            oldest = next(k for k in self._host if k not in self._parked)
            data, _ = self._host.pop(oldest)
            self._host_bytes -= len(data)
            self.counters["kv_dropped"] += 1
        return True

    def _save_ahead(self) -> bool:
        """While the engine has nothing to do and every sequence is taken, copy an idle session's KV to host
        memory, least recently used first (the next to be evicted), where the budget has room without dropping
        anything. The eviction that makes way for another session's turn then keeps the copy instead of saving
        the KV on the way to that turn's first delta (0.27-0.31 ms of 4.9-6.6, bundled model, 16 sessions:
        bench/first_delta.py).
        False when there is nothing to copy."""
        if not self.save_ahead or self._free or not self.host_budget:
            return False
        for key, slot in self._slots.items():
            copy = self._copies.get(key)
            if not slot.tokens or (copy is not None and copy[1] == slot.tokens):
                continue
            self._drop_copy(key)
            state = self._seq_state(slot.seq, limit=self.host_budget - self._host_bytes - self._copies_bytes)
            if state is None:
                return False
            self._copies[key] = (state, list(slot.tokens))
            self._copies_bytes += len(state)
            self.counters["kv_saved_ahead"] += 1
            return True
        return False

    def _keep_pace(self, job: _Job) -> None:
        """Note how long after its last turn ended this session's line came (_restore_ahead)."""
        key = job.request.key
        if (ended := self._ended_at.pop(key, None)) is not None:
            gap = job.submitted - ended
            before = self._pace.get(key)
            self._pace[key] = gap if before is None else (before + gap) / 2
        if max(len(self._pace), len(self._ended_at), len(self._cuts)) > 4 * (len(self._slots) + len(self._host)) + 64:
            # forget the sessions whose KV the engine no longer holds
            held = self._slots.keys() | self._host.keys()
            self._pace = {k: v for k, v in self._pace.items() if k in held}
            self._ended_at = {k: v for k, v in self._ended_at.items() if k in held}
            self._cuts = {k: v for k, v in self._cuts.items() if k in held}

    def _due(self, key: str, now: float) -> float:
        """When the session's next line is expected: its last turn's end plus its pace; never for a session with no
        pace yet, or one a whole pace overdue (its player may have gone)."""
        ended, pace = self._ended_at.get(key), self._pace.get(key)
        if ended is None or pace is None or now > ended + 2 * pace:
            return math.inf
        return ended + pace

    def _restore_ahead(self) -> bool:
        """While the engine has nothing to do, put back into the context the KV of the session in host memory whose
        next line is expected first, in place of an idle session's expected later (whose KV is already copied to
        host memory, _save_ahead): sessions that come back at a steady pace (an NPC's script, a player reading at an
        even speed) then find their KV in the context instead of waiting for its restore (taking a sequence: 0.38
        ms of a 5.9 ms first delta without this, 0.02 with it; bundled model, 16 sessions at a steady 2 s pace,
        bench/first_delta.py). False when nothing is worth moving."""
        if not self.restore_ahead or not self._host:
            return False
        now = time.perf_counter()
        waiting = [k for k in self._host if k not in self._parked]
        key = min(waiting, key=lambda k: self._due(k, now), default=None)
        if key is None or (due := self._due(key, now)) == math.inf:
            return False
        victim = None
        if not self._free:
            copied = [
                k
                for k, slot in self._slots.items()
                if k not in self._ahead and (c := self._copies.get(k)) is not None and c[1] == slot.tokens
            ]
            victim = max(copied, key=lambda k: self._due(k, now), default=None)
            if victim is None or self._due(victim, now) <= due:
                return False
        saved = self._unkeep(key)  # before the eviction, which may need the room in host memory
        assert saved is not None
        if victim is not None:
            self._evict(victim)  # (its copy becomes its saved KV)
        slot = self._slots[key] = _Slot(self._free.pop())
        self._put_in(slot, *saved)
        self.counters["kv_restored_ahead"] += 1
        return True

    def _drop_copy(self, key: str) -> tuple[Any, list[int]] | None:
        copy = self._copies.pop(key, None)
        if copy is not None:
            self._copies_bytes -= len(copy[0])
        return copy

    def _restore(self, key: str, slot: _Slot) -> None:
        if (saved := self._unkeep(key)) is not None:
            self._put_in(slot, *saved)

    def _unkeep(self, key: str) -> tuple[Any, list[int]] | None:
        """Take a session's saved KV out of host memory."""
        saved = self._host.pop(key, None)
        if saved is not None:
            self._host_bytes -= len(saved[0])
            self._parked.discard(key)
        return saved

    def _put_in(self, slot: _Slot, data: Any, tokens: list[int]) -> None:
        if self._set_state(slot.seq, data):
            slot.tokens = tokens
            self.counters["kv_restored"] += 1
        else:  # could not restore: start empty, the history is prefilled
            C.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)

    def _drop(self, key: str) -> None:
        self._ahead.pop(key, None)
        self._drop_copy(key)
        slot = self._slots.pop(key, None)
        if slot is not None:
            C.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)
            self._free.append(slot.seq)

    def _start(self, job: _Job, slot: _Slot) -> _Seq:
        request = job.request
        text, prompt, cut = self._prompt(request, slot.tokens, self._cuts.get(request.key, 0))
        if cut:
            self._cuts[request.key] = cut
        else:
            self._cuts.pop(request.key, None)
        keep = _common_prefix(slot.tokens, prompt)
        if keep < len(slot.tokens) and text is not None:
            prompt, keep = self._match_text(slot, text, prompt, keep)
        if keep < len(prompt) - 1 and self._can_shift:
            keep = self._shift(slot, prompt, keep)
        keep = self._share_prefix(slot, prompt, keep)
        keep = min(keep, len(prompt) - 1)  # at least one token is decoded, for fresh logits
        C.llama_memory_seq_rm(self._mem, slot.seq, keep, -1)
        del slot.tokens[keep:]
        self.counters["reused_tokens"] += keep
        self.counters["prefilled_tokens"] += len(prompt) - keep
        self.counters["turns"] += 1
        return _Seq(
            job,
            slot,
            self._sampler(request),
            StopMatcher(request.stop),
            prompt_len=len(prompt),
            reused=keep,
            todo=prompt[keep:],
            queue_ms=job.queue_ms(),
            emitted_upto=keep,
            text=text,
            cut=cut,
        )

    def _match_text(self, slot: _Slot, text: bytes, prompt: list[int], keep: int) -> tuple[list[int], int]:
        """Reuse the sequence's KV as far as its tokens spell the prompt's text, even where those tokens are not
        how the tokenizer would split that text (a model's samples often are not: re-tokenized, they no longer
        match and the whole reply would be prefilled again). Only the rest of the text is tokenized anew."""
        assert self.model is not None
        pos = held = 0
        for tok in slot.tokens:
            piece = self.model.piece(tok, special=True)
            if not piece or text[pos : pos + len(piece)] != piece:
                break
            pos += len(piece)
            held += 1
        if held <= keep:
            return prompt, keep
        self.counters["text_matched_tokens"] += held - keep
        return slot.tokens[:held] + self.model.tokenize_bytes(text[pos:]), held

    def _share_prefix(self, slot: _Slot, prompt: list[int], keep: int) -> int:
        """A persona shared by many sessions (the same NPC) is prefilled once: a session that holds less of its
        prompt than another sequence, or another session's KV saved in host memory, copies that KV (the state
        blob, cut to the shared prefix) instead of computing it again."""
        best: _Slot | tuple[Any, list[int]] | None = None
        best_len = keep + MIN_SHARED_PREFIX - 1
        if best_len >= len(prompt):  # a returning session already holds (nearly) all of it: nothing to gain
            return keep
        for other in self._slots.values():
            if other is not slot:
                n = _common_prefix(other.tokens, prompt)
                if n > best_len:
                    best, best_len = other, n
        for saved in self._host.values():
            n = _common_prefix(saved[1], prompt)
            if n > best_len:
                best, best_len = saved, n
        if best is None:
            return keep
        best_len = min(best_len, len(prompt) - 1)
        state, tokens = (self._seq_state(best.seq), best.tokens) if isinstance(best, _Slot) else best
        C.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)
        if state is None or not self._set_state(slot.seq, state):
            slot.tokens = []
            return 0
        C.llama_memory_seq_rm(self._mem, slot.seq, best_len, -1)
        slot.tokens = tokens[:best_len]
        self.counters["shared_prefix_tokens"] += best_len - keep
        return best_len

    def _follow(self, q: _Seq, active: list[_Seq]) -> None:
        """Sessions of the same NPC opening at once: another turn may still be prefilling the persona this one
        shares, so that there is nothing to copy yet. Then this turn waits until that one holds the shared
        prefix and copies it (``_catch_up``) instead of computing the same tokens beside it on the same core."""
        prompt = q.slot.tokens + q.todo
        best = q.reused + MIN_SHARED_PREFIX - 1
        for other in active:
            if other.next_token is None and other.todo:
                n = min(_common_prefix(other.slot.tokens + other.todo, prompt), len(prompt) - 1)
                if n > best and n > len(other.slot.tokens):
                    q.lead, q.lead_len, best = other, n, n
        if q.lead is not None:
            self.counters["shared_prefix_waits"] += 1

    def _catch_up(self, q: _Seq, active: list[_Seq]) -> bool:
        """Whether ``q`` may prefill: it follows no turn, or the one it follows now holds their shared prefix
        (or has left): then its KV is copied, as ``_share_prefix`` does for a sequence's or host memory's."""
        lead = q.lead
        if lead is None:
            return True
        if lead in active and lead.next_token is None and lead.todo and len(lead.slot.tokens) < q.lead_len:
            return False
        q.lead = None
        keep, prompt = len(q.slot.tokens), q.slot.tokens + q.todo
        got = self._share_prefix(q.slot, prompt, keep)
        q.todo, q.reused, q.emitted_upto = prompt[got:], got, got
        self.counters["reused_tokens"] += got - keep
        self.counters["prefilled_tokens"] -= got - keep
        return True

    def _shift(self, slot: _Slot, prompt: list[int], keep: int) -> int:
        """Context shift. When the oldest turns were left out of the prompt to make it fit (``_prompt``), the
        sequence still holds them after the persona. Remove that span from the KV and move what follows back
        (llama.cpp re-rotates the keys), instead of prefilling the rest of the story again, as KoboldCpp and
        llama-server do. The kept turns' KV was computed with the dropped ones in view: an approximation
        that lets a story go on indefinitely at the cost of one small prefill per turn."""
        held, want = slot.tokens, prompt[keep:]
        best_at, best_len = 0, 0
        for at in range(keep + 1, len(held)):
            if held[at] == want[0]:
                n = _common_prefix(held[at:], want)
                if n > best_len:
                    best_at, best_len = at, n
        if best_len < min(16, len(want)):
            return keep  # no long enough run to keep: prefill as usual
        gap = best_at - keep
        C.llama_memory_seq_rm(self._mem, slot.seq, keep, best_at)
        C.llama_memory_seq_add(self._mem, slot.seq, best_at, -1, -gap)
        del held[keep:best_at]
        self.counters["context_shifts"] += 1
        self.counters["shifted_out_tokens"] += gap
        return _common_prefix(held, prompt)

    def _step(self, active: list[_Seq]) -> None:
        for q in [q for q in active if q.job.request.cancel.is_set()]:
            self._finish(q, "cancelled", active)
        if not active and not self._ahead:
            return
        ready = [q for q in active if self._catch_up(q, active)]  # (turns waiting for a shared prefix sit out)
        # Prompts first: where turns are prefilling beside turns generating, the prompts go alone in one step and
        # the next tokens in the next. llama.cpp gains next to nothing from batching one sequence's prompt with
        # other sequences' tokens (bench/step_mix.py: a 10-token prompt beside 8 sequences' next tokens took 16.7 ms
        # on the bundled model, 4.1 and 11.8 ms apart; 115 ms on the 201 M model, 49 and 60 apart), so a new turn's
        # first token comes as soon as its prompt alone is decoded, and the others' next ones no later than in
        # the shared step. Never twice in a row: the generating turns wait at most one step of prompts.
        both = (
            self.prefill_first
            and any(q.next_token is not None for q in active)
            and any(q.next_token is None and q.todo for q in ready)
        )
        alone, hold = both and not self._prefilled_last, both and self._prefilled_last  # hold: prompts sit it out
        self._prefilled_last = alone
        if alone:
            self.counters["prefill_first_steps"] += 1
        ahead = [] if alone else [(self._slots[key], key) for key in self._ahead]
        self._compact([q.slot for q in active] + [slot for slot, _ in ahead])
        room = self.n_batch - sum(q.next_token is not None for q in active)
        take: dict[str, int] = {}  # next turns' openings go all at once (one token a step changed replies)
        for _, key in ahead:
            take[key] = min(len(self._ahead[key]), room)
            room -= take[key]
        # Prompt tokens go to prefilling turns in the order they started, up to the chunk left beside the decodes.
        budget = 0 if hold else min(self.prefill_chunk, room)
        chunks: dict[int, list[int]] = {}
        for q in ready:
            if q.next_token is None and q.todo and budget > 0:
                chunks[id(q)], q.todo = q.todo[:budget], q.todo[budget:]
                budget -= len(chunks[id(q)])
        # The batch lists sequences by id: llama.cpp decodes a run of consecutive ids in one pass (see _compact).
        b, n = self._batch, 0
        rows: list[tuple[_Seq, int]] = []  # sequences whose logits this batch produces, at which row
        order: list[int] = []  # the sequence ids in the batch, in batch order
        entries: list[tuple[_Slot, _Seq | str]] = [(q.slot, q) for q in active]
        entries += ahead
        for slot, item in sorted(entries, key=lambda e: e[0].seq):
            start = n
            if isinstance(item, str):
                todo = self._ahead[item]
                for tok in todo[: take[item]]:
                    n = self._put(n, slot, tok, False)
                del todo[: take[item]]
                self.counters["ahead_tokens"] += take[item]
            elif item.next_token is not None:
                if alone:
                    continue  # its next token goes in the next step
                n = self._put(n, slot, item.next_token, True)
                rows.append((item, n - 1))
            elif chunk := chunks.get(id(item)):
                for i, tok in enumerate(chunk):
                    n = self._put(n, slot, tok, not item.todo and i == len(chunk) - 1)
                if not item.todo:
                    rows.append((item, n - 1))
            if n > start:
                order.append(slot.seq)
        if ahead:
            self._ahead = {key: todo for key, todo in self._ahead.items() if todo}
        self.counters["steps"] += 1
        if not _consecutive(order):
            self.counters["split_steps"] += 1  # llama.cpp takes ids in batch order: n, n+1, ... in one pass
        b.n_tokens = n
        t0 = time.perf_counter()
        rc = C.llama_decode(self.ctx, b)
        self._decode_s += time.perf_counter() - t0
        self.counters["decode_ms"] = round(self._decode_s * 1000)
        if rc != 0:
            for _, key in ahead:
                self._drop(key)
            for q in list(active):
                self._drop(q.job.request.key)
                active.remove(q)
                q.job.emit(Finish("error", queue_ms=q.queue_ms, error=f"llama_decode returned {rc}"))
                C.llama_sampler_free(q.sampler)
            return
        for q, row in rows:
            if (q.next_token is None and not q.produced) or self._emitted_all(q):  # the prompt, or a token fully sent
                q.emitted_upto = len(q.slot.tokens)
            self._sample(q, row, active)
        if self._wake():
            # Hand the core to the event loop, which has the tokens just emitted to send. Where the two threads
            # share a core, the loop otherwise waited while the next step computed, for as long as the kernel's
            # wakeup granularity (~1 ms; measured: bundled model, 16 sessions, median first delta 8.9 -> 7.8 ms).
            _sched_yield()
        if self._ahead and not active:
            self._step(active)  # the last turns ended: their next turns' openings now, before any new turn starts

    def _wake(self) -> bool:
        """Hand what this step emitted to the event loops; whether there was anything."""
        woken = False
        for outbox in self._to_wake:
            woken = outbox.wake() or woken
        return woken

    def _compact(self, slots: list[_Slot]) -> None:
        """Keep the generating sequences on consecutive ids. With a KV split per sequence llama.cpp decodes a batch
        in one pass only over a run of consecutive sequence ids in batch order; every further run is another pass
        over all the weights (bench/batch_ids.py, 201 M model: 16 sequences' next tokens in 81 ms on ids 0-15,
        172 ms on the same ids shuffled). So while the ids in use have a hole, the sequence on the highest id moves
        into the lowest hole, its KV copied through llama.cpp's per-sequence state (0.36 ms for 200 tokens there)
        and swapped with the idle session's KV there."""
        ids = sorted(slot.seq for slot in slots)
        if _consecutive(ids):
            return
        by_seq = {s.seq: s for s in self._slots.values()}
        while not _consecutive(ids):
            hole = next(i for i in range(ids[0], ids[-1]) if i not in ids)
            top = by_seq[ids[-1]]
            idle = by_seq.get(hole)
            if not self._swap(top, hole, idle):
                return  # decoded in more than one pass this step, as without the move
            by_seq[hole] = top
            if idle is not None:
                by_seq[idle.seq] = idle
            ids = sorted(slot.seq for slot in slots)

    def _swap(self, slot: _Slot, to: int, other: _Slot | None) -> bool:
        """Move ``slot``'s KV to sequence ``to``, and the KV of ``other`` (the session there, if any) to where
        ``slot`` was. False, with nothing moved, when llama.cpp refuses."""
        here = slot.seq
        mine = self._seq_state(here) if slot.tokens else None
        theirs = self._seq_state(to) if other is not None and other.tokens else None
        if (slot.tokens and mine is None) or (other is not None and other.tokens and theirs is None):
            return False
        C.llama_memory_seq_rm(self._mem, to, -1, -1)
        if mine is not None and not self._set_state(to, mine):
            C.llama_memory_seq_rm(self._mem, to, -1, -1)
            self._put_back(other, to, theirs)
            return False
        C.llama_memory_seq_rm(self._mem, here, -1, -1)
        self._put_back(other, here, theirs)
        slot.seq = to
        if other is not None:
            other.seq = here
        else:
            self._free.remove(to)
            self._free.append(here)
        self.counters["kv_moves"] += 1
        return True

    def _put_back(self, slot: _Slot | None, seq: int, data: Any) -> None:
        """Load an idle session's saved KV into ``seq``; if llama.cpp refuses, its next turn prefills its history."""
        if slot is not None and data is not None and not self._set_state(seq, data):
            C.llama_memory_seq_rm(self._mem, seq, -1, -1)
            slot.tokens = []

    def _seq_state(self, seq: int, limit: int | None = None) -> Any:
        """A sequence's KV as llama.cpp's per-sequence state (a ctypes byte array), or None if llama.cpp cannot
        write it or it is larger than ``limit`` bytes."""
        size = C.llama_state_seq_get_size(self.ctx, seq)
        if limit is not None and size > limit:
            return None
        buf = (ctypes.c_uint8 * size)()
        written = C.llama_state_seq_get_data(self.ctx, buf, size, seq)
        return (ctypes.c_uint8 * written).from_buffer(buf) if written else None

    def _set_state(self, seq: int, data: Any) -> bool:
        """Load a state from ``_seq_state`` into ``seq``; False if llama.cpp refuses it."""
        return bool(C.llama_state_seq_set_data(self.ctx, data, len(data), seq) == len(data))

    def _put(self, n: int, slot: _Slot, tok: int, logits: bool) -> int:
        token, pos, n_seq_id, seq_id, out = self._b
        token[n] = tok
        pos[n] = len(slot.tokens)
        n_seq_id[n] = 1
        seq_id[n][0] = slot.seq
        out[n] = logits
        slot.tokens.append(tok)
        return n + 1

    @staticmethod
    def _emitted_all(q: _Seq) -> bool:
        return not q.stop.holding and not q.utf8.getstate()[0]

    def _sample(self, q: _Seq, row: int, active: list[_Seq]) -> None:
        assert self.model is not None
        request = q.job.request
        q.next_token = None
        if q.produced >= request.max_tokens or len(q.slot.tokens) >= self.n_ctx_seq:
            self._finish(q, "length", active)
            return
        tok = C.llama_sampler_sample(q.sampler, self.ctx, row)
        if self.model.is_eog(tok):
            self._finish(q, "stop", active)
            return
        q.produced += 1
        self.counters["generated_tokens"] += 1
        text, hit = q.stop.feed(q.utf8.decode(self.model.piece(tok)))
        if text:
            q.job.emit(Token(text))
            q.reply.append(text)
        if hit:
            self._finish(q, "stop", active)
            return
        q.next_token = tok  # decoded with the next step's batch

    def _finish(self, q: _Seq, reason: FinishReason, active: list[_Seq]) -> None:
        active.remove(q)
        C.llama_sampler_free(q.sampler)
        if reason == "cancelled":
            # The history keeps only what reached the frame log; drop KV for anything generated past it.
            C.llama_memory_seq_rm(self._mem, q.slot.seq, q.emitted_upto, -1)
            del q.slot.tokens[q.emitted_upto :]
        else:
            if tail := q.stop.flush() + q.utf8.decode(b"", final=True):
                q.job.emit(Token(tail))
                q.reply.append(tail)
            if self.decode_ahead and (ahead := self._ahead_of_next_turn(q)):
                self._ahead[q.job.request.key] = ahead
            self._ended_at[q.job.request.key] = time.perf_counter()
        self._ended(q, reason)

    @staticmethod
    def _ended(q: _Seq, reason: FinishReason) -> None:
        q.job.emit(
            Finish(
                reason,
                prompt_tokens=q.prompt_len,
                reused_tokens=q.reused,
                completion_tokens=q.produced,
                queue_ms=q.queue_ms,
            )
        )

    def _ahead_of_next_turn(self, q: _Seq) -> list[int]:
        """The tokens that will open the session's next turn whatever its line: the chat template's end of this
        reply and start of a user message (ChatML: ``<|im_end|>\\n<|im_start|>user\\n``). Decoded while the
        player reads and types, they are not prefilled when the line comes (on the 201 M benchmark model: 5 of
        the ~12 tokens a returning turn prefills). Empty when the sequence does not spell the start of that text
        (a stop string cut the reply, the newest turn alone did not fit) or it would not fit. A story that has
        outgrown the context renders the turns its prompt kept."""
        assert self.model is not None
        request = q.job.request
        if q.text is None:
            return []
        reply = "".join(q.reply)
        messages = _kept(request.messages, q.cut)  # as the prompt had them
        if request.continue_last and messages and messages[-1].role == "assistant":
            messages[-1] = Message("assistant", messages[-1].content + reply)
        else:
            messages.append(Message("assistant", reply))
        try:
            rendered = self.model.template.render([*messages, Message("user", _NEXT_LINE)]).encode()
        except Exception:  # a template that refuses this turn order: nothing to decode ahead
            return []
        at = rendered.find(_NEXT_LINE.encode())
        self.model.pieces(q.slot.tokens[q.reused : q.prompt_len])  # this prompt's new tokens' text, known before
        # the next turn's prompt is matched against them (_tokenize); the reply's was looked up as it streamed
        held = q.text + b"".join(self.model.pieces(q.slot.tokens[q.prompt_len :]))
        if at < 0 or not rendered[:at].startswith(held):
            return []
        ahead = self.model.tokenize_bytes(rendered[len(held) : at]) if at > len(held) else []
        return ahead if len(q.slot.tokens) + len(ahead) < self.n_ctx_seq * 3 // 4 else []  # room for a turn

    def _prompt(self, request: Request, held: list[int], cut: int = 0) -> tuple[bytes | None, list[int], int]:
        """The prompt's text and tokens, and how many of the oldest turns it leaves out: the persona and the most
        recent turns that fit with room to answer. (The text is None when even the newest turn alone had to be
        cut.) ``held``: the tokens the session's sequence holds, reused where they spell the text (see _tokenize);
        ``cut``: how many turns the session's last prompt left out.

        The search starts from that cut, and a try renders and tokenizes only the turns it keeps, so that a turn's
        prompt costs what the context holds, not what the story has grown to (leaving out one more turn at a time,
        each try tokenizing the whole rest of the story, took seconds a turn hundreds of turns into a story).

        Where the context cannot shift (_keys_can_shift), a story that outgrows it is cut as KoboldCpp's smart
        context does: to half the context at once, and the next turns keep that cut while it fits and add to
        its KV, instead of losing one more turn at every turn and prefilling all the rest again each time."""
        assert self.model is not None
        messages, template = request.messages, self.model.template
        limit = self.n_ctx_seq - min(request.max_tokens, self.n_ctx_seq // 4)  # room to answer
        most = max(0, len(messages) - _persona(messages) - 1)  # left out at most: all but the newest turn
        tries: dict[int, tuple[bytes, list[int]]] = {}

        def attempt(d: int) -> tuple[bytes, list[int]]:
            if d not in tries:
                text = template.render(_kept(messages, d), continue_last=request.continue_last).encode()
                tries[d] = (text, self._tokenize(text, held))
            return tries[d]

        def fits(d: int, bound: int = limit) -> bool:
            return len(attempt(d)[1]) <= bound

        def done(d: int) -> tuple[bytes, list[int], int]:
            return (*attempt(d), d)

        if not fits(min(cut, most)) and not fits(most):  # (where the first fits, so does the second: it keeps less)
            return None, attempt(most)[1][-limit:], most
        settled = 0 if self._can_shift else self._last_split(held, len(held))
        if settled and 0 < cut <= most and fits(cut) and _common_prefix(attempt(cut)[1], held) >= settled:
            return done(cut)  # the cut the sequence holds still fits: keep it
        d = _smallest(fits, 0, most, min(cut, most))
        if self._can_shift or d == 0 or (settled and _common_prefix(attempt(d)[1], held) >= settled):
            return done(d)  # (the last: a persona copied from another session, which any cut spells)
        return done(_smallest(lambda c: c == most or fits(c, limit // 2), d, most, max(cut, d)))

    def _tokenize(self, text: bytes, held: list[int]) -> list[int]:
        """The prompt's tokens. Only the text after the last control token of ``held`` that still spells the
        text is tokenized again: llama.cpp splits text at control tokens before anything else, so this is how the
        whole text would be split wherever ``held`` is how its own text would be; where it is not (a model's
        samples often are not), the sequence's tokens stay, as in _match_text. A returning session's prompt is
        mostly its history: preparing it took 0.46-0.53 ms of every first delta at 16 sessions on the bundled
        model, and 0.23-0.25 ms this way (bench/first_delta.py)."""
        assert self.model is not None
        pieces = self.model.pieces(held)
        spelled = b"".join(pieces)
        if all(pieces) and text.startswith(spelled):
            n, pos = len(held), len(spelled)
        else:  # the text departs from what the sequence holds: find where
            n = pos = 0
            for p in pieces:
                if not p or not text.startswith(p, pos):
                    break
                pos += len(p)
                n += 1
        kept = self._last_split(held, n)
        pos -= sum(map(len, pieces[kept:n]))
        return held[:kept] + self.model.tokenize_bytes(text[pos:])

    def _last_split(self, held: list[int], n: int) -> int:
        """How many of ``held[:n]`` end at a token after which text is tokenized the same alone: the tokens a prompt
        takes as they are (_tokenize)."""
        assert self.model is not None
        while n and not self.model.splits_after(held[n - 1]):
            n -= 1
        return n

    def _sampler(self, request: Request) -> Any:
        chain = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
        if request.grammar is not None:
            assert self.model is not None
            grammar = C.llama_sampler_init_grammar(self.model.vocab, request.grammar.encode(), b"root")
            if not grammar:
                C.llama_sampler_free(chain)
                raise EngineError("llama.cpp rejected the grammar")
            n, biases = self.model.control_bias()
            if n:
                C.llama_sampler_chain_add(chain, C.llama_sampler_init_logit_bias(self.model.n_vocab, n, biases))
            C.llama_sampler_chain_add(chain, grammar)
        if request.temperature <= 0:
            C.llama_sampler_chain_add(chain, C.llama_sampler_init_greedy())
        else:
            seed = request.seed if request.seed is not None else random.getrandbits(32)
            C.llama_sampler_chain_add(chain, C.llama_sampler_init_top_p(request.top_p, 1))
            C.llama_sampler_chain_add(chain, C.llama_sampler_init_temp(request.temperature))
            C.llama_sampler_chain_add(chain, C.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return chain


def _persona(messages: list[Message]) -> int:
    """How many messages open the conversation as its persona (a system message), never left out of a prompt."""
    return 1 if messages and messages[0].role == "system" else 0


def _kept(messages: list[Message], cut: int) -> list[Message]:
    """The messages a prompt keeps when it leaves out the ``cut`` oldest turns after the persona."""
    first = _persona(messages)
    return [*messages[:first], *messages[first + cut :]]


def _smallest(ok: Callable[[int], bool], lo: int, hi: int, start: int) -> int:
    """The smallest ``n`` in ``lo..hi`` for which ``ok(n)``, where ``ok`` turns true once and stays true and
    ``ok(hi)`` is: searched outwards from ``start`` (the answer is usually near it), then by halves."""
    good = bad = min(max(start, lo), hi)
    step = 1
    if ok(good):
        while good > lo:  # down until one fails
            bad = max(lo, good - step)
            if not ok(bad):
                break
            good, step = bad, step * 2
        else:
            return good
    else:
        while True:  # up until one holds
            good = min(hi, bad + step)
            if ok(good):
                break
            bad, step = good, step * 2
    while good - bad > 1:
        mid = (good + bad) // 2
        if ok(mid):
            good = mid
        else:
            bad = mid
    return good


def _consecutive(ids: list[int]) -> bool:
    """Whether the ids, in this order, are n, n+1, n+2, ..."""
    return all(b == a + 1 for a, b in zip(ids, ids[1:], strict=False))


def _common_prefix(a: list[int], b: list[int]) -> int:
    """How many tokens ``a`` and ``b`` share from the start. Compared by slices (in C), halving where they differ:
    a prompt is mostly a sequence's tokens plus a few, and a new session's is checked against every session's
    held KV for a shared persona (bench.first_delta at 64 card-persona sessions, docs/benchmarks.md)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    same, differs = 0, n  # a[:same] == b[:same], a[:differs] != b[:differs]
    while differs - same > 1:
        mid = (same + differs) // 2
        if a[same:mid] == b[same:mid]:
            same = mid
        else:
            differs = mid
    return same
