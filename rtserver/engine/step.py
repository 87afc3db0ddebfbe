"""One decode step and sampling: each step builds one llama.cpp batch of the next token of every generating turn,
then prompt tokens of those prefilling (at most ``prefill_chunk``, so a long prompt does not stall the others'
streams for long), decodes it, and samples each turn whose logits it produced."""

from __future__ import annotations

import codecs
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import llama_cpp as C

from ..errors import EngineError
from .base import Finish, FinishReason, Request, Token
from .kv import Slot, consecutive
from .model import Model
from .outbox import Job
from .parts import Parts
from .prompt import StopMatcher
from .reuse import catch_up

_sched_yield: Callable[[], None] = getattr(os, "sched_yield", lambda: None)  # not on every platform


@dataclass(eq=False)
class Running:
    """A turn the worker is running: prefilling ``todo``, then generating one token per step."""

    job: Job
    slot: Slot
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
    slice_from: int = 0  # ``produced`` when it last took a sequence (time slicing: scheduler.Scheduler.preempt)
    lead: Running | None = None  # a turn prefilling the prefix this one shares with it: wait, then copy (reuse)
    lead_len: int = 0  # how much of that prefix it must hold first
    reply: list[str] = field(default_factory=list)  # the text sent
    utf8: codecs.IncrementalDecoder = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))


class Stepper:
    def __init__(self, parts: Parts) -> None:
        config, context = parts.config, parts.context
        self.model, self.context, self.ctx = parts.model, context, context.ptr
        self.kv, self.planner = parts.kv, parts.planner
        self.notes, self.outboxes, self.counters, self.clock = parts.notes, parts.outboxes, parts.counters, parts.clock
        self.n_batch, self.n_ctx_seq, self.chunk = config.n_batch, context.n_ctx_seq, config.chunk
        self.prefill_first, self.decode_ahead = config.prefill_first, config.decode_ahead
        self.prefilled_last = False  # the last step was prompts alone (prefill_first): the next is the others'
        self.decode_s = 0.0

    def step(self, active: list[Running]) -> None:
        kv, counters = self.kv, self.counters
        for q in [q for q in active if q.job.request.cancel.is_set()]:
            self.finish(q, "cancelled", active)
        if not active and not kv.ahead:
            return
        ready = [q for q in active if q.lead is None or catch_up(kv, q, active)]  # (followers sit out)
        # Prompts first: where turns prefill beside turns generating, the prompts go alone in one step and the next
        # tokens in the next; llama.cpp gains next to nothing from batching them together (docs/adr/0005), so a new
        # turn's first token comes sooner and the others' no later. Never twice in a row.
        both = (
            self.prefill_first
            and any(q.next_token is not None for q in active)
            and any(q.next_token is None and q.todo for q in ready)
        )
        alone, hold = both and not self.prefilled_last, both and self.prefilled_last  # hold: prompts sit it out
        self.prefilled_last = alone
        if alone:
            counters["prefill_first_steps"] += 1
        ahead = [] if alone else [(kv.slots[key], key) for key in kv.ahead]
        kv.compact([q.slot for q in active] + [slot for slot, _ in ahead])
        room = self.n_batch - sum(q.next_token is not None for q in active)
        take: dict[str, int] = {}  # next turns' openings go all at once (one token a step changed replies)
        for _, key in ahead:
            take[key] = min(len(kv.ahead[key]), room)
            room -= take[key]
        # Prompt tokens go to prefilling turns in the order they started, up to the chunk left beside the decodes.
        budget = 0 if hold else min(self.chunk, room)
        chunks: dict[int, list[int]] = {}
        for q in ready:
            if q.next_token is None and q.todo and budget > 0:
                chunks[id(q)], q.todo = q.todo[:budget], q.todo[budget:]
                budget -= len(chunks[id(q)])
        # The batch lists sequences by id: llama.cpp decodes a run of consecutive ids in one pass (KV.compact).
        b, n, put = self.context.batch, 0, self._put
        rows: list[tuple[Running, int]] = []  # sequences whose logits this batch produces, at which row
        order: list[int] = []  # the sequence ids in the batch, in batch order
        entries: list[tuple[Slot, Running | str]] = [(q.slot, q) for q in active]
        entries += ahead
        for slot, item in sorted(entries, key=lambda e: e[0].seq):
            start = n
            if isinstance(item, str):
                todo = kv.ahead[item]
                for tok in todo[: take[item]]:
                    n = put(n, slot, tok, False)
                del todo[: take[item]]
                counters["ahead_tokens"] += take[item]
            elif item.next_token is not None:
                if alone:
                    continue  # its next token goes in the next step
                n = put(n, slot, item.next_token, True)
                rows.append((item, n - 1))
            elif chunk := chunks.get(id(item)):
                for i, tok in enumerate(chunk):
                    n = put(n, slot, tok, not item.todo and i == len(chunk) - 1)
                if not item.todo:
                    rows.append((item, n - 1))
            if n > start:
                order.append(slot.seq)
        if ahead:
            kv.ahead = {key: todo for key, todo in kv.ahead.items() if todo}
        counters["steps"] += 1
        if not consecutive(order):
            counters["split_steps"] += 1  # llama.cpp takes ids in batch order: n, n+1, ... in one pass
        b.n_tokens = n
        t0 = self.clock()
        rc = C.llama_decode(self.ctx, b)
        self.decode_s += self.clock() - t0
        counters["decode_ms"] = round(self.decode_s * 1000)
        if rc != 0:
            self._failed(rc, ahead, active)
            return
        for q, row in rows:
            if (q.next_token is None and not q.produced) or _emitted_all(q):  # the prompt, or a token fully sent
                q.emitted_upto = len(q.slot.tokens)
            self._sample(q, row, active)
        if self.outboxes.wake():
            # Hand the core to the event loop, which has the tokens just emitted to send: where the two threads
            # share a core, it otherwise waited for the kernel's wakeup granularity while the next step computed.
            _sched_yield()
        if kv.ahead and not active:
            self.step(active)  # the last turns ended: their next turns' openings now, before any new turn starts

    def _failed(self, rc: int, ahead: list[tuple[Slot, str]], active: list[Running]) -> None:
        for _, key in ahead:
            self.kv.drop(key)
        for q in list(active):
            self.kv.drop(q.job.request.key)
            active.remove(q)
            q.job.emit(Finish("error", queue_ms=q.queue_ms, error=f"llama_decode returned {rc}"))
            C.llama_sampler_free(q.sampler)

    def _put(self, n: int, slot: Slot, tok: int, logits: bool) -> int:
        token, pos, n_seq_id, seq_id, out = self.context.arrays
        token[n] = tok
        pos[n] = len(slot.tokens)
        n_seq_id[n] = 1
        seq_id[n][0] = slot.seq
        out[n] = logits
        slot.tokens.append(tok)
        return n + 1

    def _sample(self, q: Running, row: int, active: list[Running]) -> None:
        request = q.job.request
        q.next_token = None
        if q.produced >= request.max_tokens or len(q.slot.tokens) >= self.n_ctx_seq:
            self.finish(q, "length", active)
            return
        tok = C.llama_sampler_sample(q.sampler, self.ctx, row)
        if self.model.is_eog(tok):
            self.finish(q, "stop", active)
            return
        q.produced += 1
        self.counters["generated_tokens"] += 1
        text, hit = q.stop.feed(q.utf8.decode(self.model.piece(tok)))
        if text:
            q.job.emit(Token(text))
            q.reply.append(text)
        if hit:
            self.finish(q, "stop", active)
            return
        q.next_token = tok  # decoded with the next step's batch

    def finish(self, q: Running, reason: FinishReason, active: list[Running]) -> None:
        active.remove(q)
        C.llama_sampler_free(q.sampler)
        if reason == "cancelled":
            # The history keeps only what reached the frame log; drop KV for anything generated past it.
            C.llama_memory_seq_rm(self.kv.mem, q.slot.seq, q.emitted_upto, -1)
            del q.slot.tokens[q.emitted_upto :]
        else:
            if tail := q.stop.flush() + q.utf8.decode(b"", final=True):
                q.job.emit(Token(tail))
                q.reply.append(tail)
            if self.decode_ahead and (ahead := self.planner.next_opening(q)):
                self.kv.ahead[q.job.request.key] = ahead
            self.notes.ended_at[q.job.request.key] = self.clock()
        ended(q, reason)


def _emitted_all(q: Running) -> bool:
    return not q.stop.holding and not q.utf8.getstate()[0]


def ended(q: Running, reason: FinishReason) -> None:
    q.job.emit(
        Finish(
            reason,
            prompt_tokens=q.prompt_len,
            reused_tokens=q.reused,
            completion_tokens=q.produced,
            queue_ms=q.queue_ms,
        )
    )


def sampler(model: Model, request: Request, prompt: list[int] | None = None) -> Any:
    """The request's sampler chain: its grammar (with control tokens ruled out), the repetition penalties (which
    have seen the prompt's last ``repeat_last_n`` tokens), then greedy or top-k / top-p / min-p sampling."""
    chain = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
    if request.grammar is not None:
        grammar = C.llama_sampler_init_grammar(model.vocab, request.grammar.encode(), b"root")
        if not grammar:
            C.llama_sampler_free(chain)
            raise EngineError("llama.cpp rejected the grammar")
        n, biases = model.control_bias()
        if n:
            C.llama_sampler_chain_add(chain, C.llama_sampler_init_logit_bias(model.n_vocab, n, biases))
        C.llama_sampler_chain_add(chain, grammar)
    if penalties := _penalties(model, request, prompt or []):
        C.llama_sampler_chain_add(chain, penalties)
    if request.temperature <= 0:
        C.llama_sampler_chain_add(chain, C.llama_sampler_init_greedy())
    else:
        seed = request.seed if request.seed is not None else random.getrandbits(32)
        if request.top_k > 0:
            C.llama_sampler_chain_add(chain, C.llama_sampler_init_top_k(request.top_k))
        C.llama_sampler_chain_add(chain, C.llama_sampler_init_top_p(request.top_p, 1))
        if request.min_p > 0:
            C.llama_sampler_chain_add(chain, C.llama_sampler_init_min_p(request.min_p, 1))
        C.llama_sampler_chain_add(chain, C.llama_sampler_init_temp(request.temperature))
        C.llama_sampler_chain_add(chain, C.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain


def _penalties(model: Model, request: Request, prompt: list[int]) -> Any:
    """llama.cpp's repetition penalties, or None when all are off. It is fed the prompt's last tokens first, so a
    reply is penalised for repeating the story, not only itself (the chain feeds it each token sampled)."""
    r = request
    last_n = len(prompt) if r.repeat_last_n < 0 else r.repeat_last_n
    if not last_n or (r.repeat_penalty == 1.0 and not r.presence_penalty and not r.frequency_penalty):
        return None
    penalties = C.llama_sampler_init_penalties(
        model.n_vocab, last_n, r.repeat_penalty, r.frequency_penalty, r.presence_penalty
    )
    for token in prompt[-last_n:]:
        C.llama_sampler_accept(penalties, token)
    return penalties
