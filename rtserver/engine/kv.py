"""The KV manager: which session's KV each llama.cpp sequence holds, the KV saved in host memory (evicted idle
sessions, parked turns, copies made ahead of an eviction), and the packing of running sequences onto
consecutive ids.

Each active session owns a sequence and keeps its KV between turns. When every sequence is taken, the least
recently used idle session's is evicted: its KV is saved to host memory within the budget, so that its next turn
restores it instead of prefilling its history again. Everything here runs on the engine's worker thread.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import llama_cpp as C

from .config import EngineConfig
from .model import Context
from .notes import SessionNotes

Saved = tuple[Any, list[int]]  # llama_state_seq data as llama.cpp wrote it (handed back as it is); its tokens


@dataclass
class Slot:
    seq: int
    tokens: list[int] = field(default_factory=list)  # what this sequence's KV holds, in order


class KV:
    def __init__(self, context: Context, config: EngineConfig, counters: dict[str, int]) -> None:
        self.context, self.mem, self.counters = context, context.mem, counters
        self.n_slots = config.slots
        self.budget = config.host_budget  # bytes of host memory for saved KV and copies together
        self.saves_ahead, self.restores_ahead = config.save_ahead, config.restore_ahead
        self.slots: OrderedDict[str, Slot] = OrderedDict()  # session key -> slot, least recently used first
        self.free = list(range(config.slots))
        self.host: OrderedDict[str, Saved] = OrderedDict()  # evicted sessions' KV, least recently evicted first
        self.host_bytes = 0
        self.parked: set[str] = set()  # of those, turns in progress: never dropped for the budget
        # Copies of idle sessions' KV still in the context, made while the engine had nothing to do, so that the one
        # evicted next need not be saved on the way to a turn (save_ahead). Within the same budget.
        self.copies: dict[str, Saved] = {}
        self.copies_bytes = 0
        # Sessions whose turn ended, with the chat template's tokens that will open their next turn, still to be
        # decoded (planner.Planner.next_opening).
        self.ahead: dict[str, list[int]] = {}

    def take(self, key: str, busy: set[str]) -> Slot | None:
        """The session's sequence, its KV restored from host memory if it was evicted; None when every sequence
        is running a turn (``busy``)."""
        self.drop_copy(key)  # its turn changes its KV
        slot = self.slots.pop(key, None)
        if slot is None:
            # Next to the running ones, so that no KV has to move for the batch to stay one run of ids (compact): a
            # free one there, else the least recently used idle session's there, else any free one, else the least
            # recently used idle session's.
            near = self.near({self.slots[k].seq for k in busy if k in self.slots})
            seq = next((i for i in near if i in self.free), None)
            if seq is None and not self.free:
                idle = [k for k in self.slots if k not in busy]
                if not idle:
                    return None
                victim = next((k for k in idle if self.slots[k].seq in near), idle[0])
                seq = self.slots[victim].seq
                self.evict(victim)
            seq = self.free[-1] if seq is None else seq
            self.free.remove(seq)
            slot = Slot(seq)
            if (saved := self.unkeep(key)) is not None:
                self.put_in(slot, *saved)
        self.slots[key] = slot  # most recently used last
        return slot

    def near(self, running: set[int]) -> list[int]:
        """Sequence ids where one more running sequence keeps the running ones one run: holes first, then the ends."""
        if not running:
            return []
        lo, hi = min(running), max(running)
        holes = [i for i in range(lo, hi) if i not in running]
        return holes + [i for i in (hi + 1, lo - 1) if 0 <= i < self.n_slots]

    def evict(self, key: str) -> None:
        """Free an idle session's sequence, keeping its KV in host memory (within the budget)."""
        old = self.slots.pop(key)
        self.ahead.pop(key, None)
        self.counters["evictions"] += 1
        copy = self.drop_copy(key)
        if copy is not None and copy[1] == old.tokens:  # saved while the engine was idle, and still what it holds
            self.counters["kv_saved_ahead_used"] += 1
            kept = self.keep(key, *copy)
        else:
            kept = self.save(key, old)
        if kept:
            self.counters["kv_saved"] += 1
        C.llama_memory_seq_rm(self.mem, old.seq, -1, -1)
        self.free.append(old.seq)

    def park(self, key: str, slot: Slot) -> bool:
        """Free a running turn's sequence, its KV parked in host memory; False (nothing done) where it does not fit
        beside the others parked."""
        if not self.save(key, slot, parking=True):
            return False
        del self.slots[key]
        C.llama_memory_seq_rm(self.mem, slot.seq, -1, -1)
        self.free.append(slot.seq)
        return True

    def unpark(self, key: str, upto: int) -> None:
        """A parked turn ended (cancelled): its KV stays as an idle session's, listed up to ``upto`` tokens (what
        reached the client); a restore removes the KV past the tokens it is listed with."""
        self.parked.discard(key)
        if key in self.host:
            data, tokens = self.host[key]
            self.host[key] = (data, tokens[:upto])

    def save(self, key: str, slot: Slot, *, parking: bool = False) -> bool:
        """Keep a sequence's KV in host memory within the budget (see ``keep``)."""
        if not self.budget or not slot.tokens:
            return False
        state = self.context.seq_state(slot.seq, limit=self.budget)
        return state is not None and self.keep(key, state, list(slot.tokens), parking=parking)

    def keep(self, key: str, state: Any, tokens: list[int], *, parking: bool = False) -> bool:
        """Hold saved KV in host memory, making room within the budget: copies of sessions still in the context go
        first (they cost only a save when evicted), then the idle sessions' saved longest ago (rebuilt by prefill
        when they return). A parked turn's is never dropped, so a turn parks only where it fits beside the others."""
        if parking:
            if sum(len(self.host[k][0]) for k in self.parked) + len(state) > self.budget:
                return False
            self.parked.add(key)
        self.host[key] = (state, tokens)
        self.host_bytes += len(state)
        while self.copies and self.host_bytes + self.copies_bytes > self.budget:
            self.drop_copy(next(iter(self.copies)))
        while self.host_bytes > self.budget:
            oldest = next(k for k in self.host if k not in self.parked)
            data, _ = self.host.pop(oldest)
            self.host_bytes -= len(data)
            self.counters["kv_dropped"] += 1
        return True

    def save_ahead(self) -> bool:
        """Idle work, while every sequence is taken: copy an idle session's KV to host memory, least recently used
        first (the next to be evicted), where the budget has room without dropping anything; the eviction that
        makes way for another turn then keeps the copy instead of saving on the way to a first delta. False when
        there is nothing to copy."""
        if not self.saves_ahead or self.free or not self.budget:
            return False
        for key, slot in self.slots.items():
            copy = self.copies.get(key)
            if not slot.tokens or (copy is not None and copy[1] == slot.tokens):
                continue
            self.drop_copy(key)
            state = self.context.seq_state(slot.seq, limit=self.budget - self.host_bytes - self.copies_bytes)
            if state is None:
                return False
            self.copies[key] = (state, list(slot.tokens))
            self.copies_bytes += len(state)
            self.counters["kv_saved_ahead"] += 1
            return True
        return False

    def restore_ahead(self, notes: SessionNotes, now: float) -> bool:
        """Idle work: put back into the context the KV of the session in host memory whose next line is expected
        first (``notes.due``), in place of an idle session's expected later whose KV is already copied, so that a
        session coming back at a steady pace finds its KV in the context. False when nothing is worth moving."""
        if not self.restores_ahead or not self.host:
            return False
        waiting = [k for k in self.host if k not in self.parked]
        key = min(waiting, key=lambda k: notes.due(k, now), default=None)
        if key is None or (due := notes.due(key, now)) == float("inf"):
            return False
        victim = None
        if not self.free:
            copied = [
                k
                for k, slot in self.slots.items()
                if k not in self.ahead and (c := self.copies.get(k)) is not None and c[1] == slot.tokens
            ]
            victim = max(copied, key=lambda k: notes.due(k, now), default=None)
            if victim is None or notes.due(victim, now) <= due:
                return False
        saved = self.unkeep(key)  # before the eviction, which may need the room in host memory
        assert saved is not None
        if victim is not None:
            self.evict(victim)  # (its copy becomes its saved KV)
        slot = self.slots[key] = Slot(self.free.pop())
        self.put_in(slot, *saved)
        self.counters["kv_restored_ahead"] += 1
        return True

    def drop_copy(self, key: str) -> Saved | None:
        copy = self.copies.pop(key, None)
        if copy is not None:
            self.copies_bytes -= len(copy[0])
        return copy

    def unkeep(self, key: str) -> Saved | None:
        """Take a session's saved KV out of host memory."""
        saved = self.host.pop(key, None)
        if saved is not None:
            self.host_bytes -= len(saved[0])
            self.parked.discard(key)
        return saved

    def put_in(self, slot: Slot, data: Any, tokens: list[int]) -> None:
        if self.context.set_state(slot.seq, data):
            slot.tokens = tokens
            self.counters["kv_restored"] += 1
        else:  # could not restore: start empty, the history is prefilled
            C.llama_memory_seq_rm(self.mem, slot.seq, -1, -1)

    def drop(self, key: str) -> None:
        """Forget a session's KV in the context (its turn failed)."""
        self.ahead.pop(key, None)
        self.drop_copy(key)
        slot = self.slots.pop(key, None)
        if slot is not None:
            C.llama_memory_seq_rm(self.mem, slot.seq, -1, -1)
            self.free.append(slot.seq)

    # --- sequence-id packing ----------------------------------------------------------------------------------

    def compact(self, slots: list[Slot]) -> None:
        """Keep the generating sequences on consecutive ids: with a KV split per sequence llama.cpp decodes a batch
        in one pass only over a run of consecutive ids in batch order, and every further run is another pass over
        all the weights (docs/adr/0005-engine-rooms.md). While the ids in use have a hole, the sequence on the
        highest id moves into the lowest hole, swapped with the idle session's KV there."""
        ids = sorted(slot.seq for slot in slots)
        if consecutive(ids):
            return
        by_seq = {s.seq: s for s in self.slots.values()}
        while not consecutive(ids):
            hole = next(i for i in range(ids[0], ids[-1]) if i not in ids)
            top = by_seq[ids[-1]]
            idle = by_seq.get(hole)
            if not self._swap(top, hole, idle):
                return  # decoded in more than one pass this step, as without the move
            by_seq[hole] = top
            if idle is not None:
                by_seq[idle.seq] = idle
            ids = sorted(slot.seq for slot in slots)

    def _swap(self, slot: Slot, to: int, other: Slot | None) -> bool:
        """Move ``slot``'s KV to sequence ``to``, and the KV of ``other`` (the session there, if any) to where
        ``slot`` was. False, with nothing moved, when llama.cpp refuses."""
        here, context = slot.seq, self.context
        mine = context.seq_state(here) if slot.tokens else None
        theirs = context.seq_state(to) if other is not None and other.tokens else None
        if (slot.tokens and mine is None) or (other is not None and other.tokens and theirs is None):
            return False
        C.llama_memory_seq_rm(self.mem, to, -1, -1)
        if mine is not None and not context.set_state(to, mine):
            C.llama_memory_seq_rm(self.mem, to, -1, -1)
            self._put_back(other, to, theirs)
            return False
        C.llama_memory_seq_rm(self.mem, here, -1, -1)
        self._put_back(other, here, theirs)
        slot.seq = to
        if other is not None:
            other.seq = here
        else:
            self.free.remove(to)
            self.free.append(here)
        self.counters["kv_moves"] += 1
        return True

    def _put_back(self, slot: Slot | None, seq: int, data: Any) -> None:
        """Load an idle session's saved KV into ``seq``; if llama.cpp refuses, its next turn prefills its history."""
        if slot is not None and data is not None and not self.context.set_state(seq, data):
            C.llama_memory_seq_rm(self.mem, seq, -1, -1)
            slot.tokens = []


def consecutive(ids: list[int]) -> bool:
    """Whether the ids, in this order, are n, n+1, n+2, ..."""
    return all(b == a + 1 for a, b in zip(ids, ids[1:], strict=False))
