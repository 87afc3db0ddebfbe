"""KV a turn reuses beyond the prefix its own sequence holds: a context shift past the turns its prompt left out,
and a prefix shared with another session (the same NPC's persona), copied instead of computed again."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import llama_cpp as C

from .kv import KV, Slot
from .planner import common_prefix

if TYPE_CHECKING:
    from .step import Running

MIN_SHARED_PREFIX = 16  # tokens another sequence must hold beyond our own before copying its KV pays


def shift(kv: KV, slot: Slot, prompt: list[int], keep: int) -> int:
    """Context shift: where the prompt leaves out the oldest turns, the sequence still holds them after the persona.
    Remove that span from the KV and move what follows back (llama.cpp re-rotates the keys) instead of prefilling
    the rest of the story again, as KoboldCpp and llama-server do. An approximation (the kept turns' KV was computed
    with the dropped ones in view) that lets a story go on indefinitely at one small prefill a turn."""
    held, want = slot.tokens, prompt[keep:]
    best_at, best_len = 0, 0
    for at in range(keep + 1, len(held)):
        if held[at] == want[0]:
            n = common_prefix(held[at:], want)
            if n > best_len:
                best_at, best_len = at, n
    if best_len < min(16, len(want)):
        return keep  # no long enough run to keep: prefill as usual
    gap = best_at - keep
    C.llama_memory_seq_rm(kv.mem, slot.seq, keep, best_at)
    C.llama_memory_seq_add(kv.mem, slot.seq, best_at, -1, -gap)
    del held[keep:best_at]
    kv.counters["context_shifts"] += 1
    kv.counters["shifted_out_tokens"] += gap
    return common_prefix(held, prompt)


def share_prefix(kv: KV, slot: Slot, prompt: list[int], keep: int) -> int:
    """A session that holds less of its prompt than another sequence, or another session's KV saved in host memory,
    copies that KV (the state, cut to the shared prefix) instead of computing it again; how much it now holds."""
    best: Slot | tuple[Any, list[int]] | None = None
    best_len = keep + MIN_SHARED_PREFIX - 1
    if best_len >= len(prompt):  # a returning session already holds (nearly) all of it: nothing to gain
        return keep
    for other in kv.slots.values():
        if other is not slot:
            n = common_prefix(other.tokens, prompt)
            if n > best_len:
                best, best_len = other, n
    for saved in kv.host.values():
        n = common_prefix(saved[1], prompt)
        if n > best_len:
            best, best_len = saved, n
    if best is None:
        return keep
    best_len = min(best_len, len(prompt) - 1)
    state, tokens = (kv.context.seq_state(best.seq), best.tokens) if isinstance(best, Slot) else best
    C.llama_memory_seq_rm(kv.mem, slot.seq, -1, -1)
    if state is None or not kv.context.set_state(slot.seq, state):
        slot.tokens = []
        return 0
    C.llama_memory_seq_rm(kv.mem, slot.seq, best_len, -1)
    slot.tokens = tokens[:best_len]
    kv.counters["shared_prefix_tokens"] += best_len - keep
    return best_len


def follow(kv: KV, q: Running, active: list[Running]) -> None:
    """Sessions of the same NPC opening at once: where another turn is still prefilling the prefix this one shares,
    this one waits until that one holds it, then copies it (``catch_up``) instead of computing the same tokens
    beside it on the same core."""
    prompt = q.slot.tokens + q.todo
    best = q.reused + MIN_SHARED_PREFIX - 1
    for other in active:
        if other.next_token is None and other.todo:
            n = min(common_prefix(other.slot.tokens + other.todo, prompt), len(prompt) - 1)
            if n > best and n > len(other.slot.tokens):
                q.lead, q.lead_len, best = other, n, n
    if q.lead is not None:
        kv.counters["shared_prefix_waits"] += 1


def catch_up(kv: KV, q: Running, active: list[Running]) -> bool:
    """Whether ``q`` may prefill: it follows no turn, or the one it follows now holds their shared prefix (or has
    left), and then its KV is copied as ``share_prefix`` does."""
    lead = q.lead
    if lead is None:
        return True
    if lead in active and lead.next_token is None and lead.todo and len(lead.slot.tokens) < q.lead_len:
        return False
    q.lead = None
    keep, prompt = len(q.slot.tokens), q.slot.tokens + q.todo
    got = share_prefix(kv, q.slot, prompt, keep)
    q.todo, q.reused, q.emitted_upto = prompt[got:], got, got
    kv.counters["reused_tokens"] += got - keep
    kv.counters["prefilled_tokens"] -= got - keep
    return True
