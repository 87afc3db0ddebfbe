"""The worker thread's loop: turns waiting for a sequence, in priority order; turns running, advanced one step at
a time; and time slicing, which parks a running turn's KV in host memory to let a waiting turn start.

A turn that finds every sequence generating waits (``Finish.queue_ms``): highest ``priority`` first, equal ones in
arrival order. With ``time_slice`` tokens, a waiting turn takes the sequence of a running turn that has generated
that many since it took it; that turn's KV parks in host memory and it resumes where it was when its turn comes
again (waiting turns first, then parked ones: highest priority, then first parked). Under overload a line starts
within a step or two instead of after the replies ahead of it; those replies stream more slowly meanwhile.
"""

from __future__ import annotations

import bisect

import llama_cpp as C

from .base import Finish
from .kv import Slot
from .outbox import Inbox, Job
from .parts import Parts
from .planner import common_prefix
from .prompt import StopMatcher
from .reuse import follow, share_prefix, shift
from .step import Running, Stepper, ended, sampler


class Scheduler:
    def __init__(self, parts: Parts, inbox: Inbox) -> None:
        self.jobs, self.lock, self.idle, self.stepper = inbox.jobs, inbox.lock, inbox.idle, Stepper(parts)
        self.model, self.kv, self.planner, self.notes, self.outboxes = (
            parts.model, parts.kv, parts.planner, parts.notes, parts.outboxes,
        )  # fmt: skip
        self.time_slice, self.counters, self.clock = parts.config.time_slice, parts.counters, parts.clock
        self.park_s = 0.0

    def run(self) -> None:
        """Until a None job: take submitted turns, start what can start, step the running ones; idle work (saving
        and restoring KV ahead) while there is nothing else to do."""
        active: list[Running] = []
        parked: list[Running] = []  # turns under way whose KV is in host memory: highest priority, then parked first
        waiting: list[Job] = []  # ordered by Job.order
        kv, jobs, counters = self.kv, self.jobs, self.counters
        while True:
            if not active and not waiting and not parked:
                self.outboxes.wake()  # what the last step or admit emitted (a turn that failed to start)
                while jobs.empty() and (kv.save_ahead() or kv.restore_ahead(self.notes, self.clock())):
                    pass
                self.idle.set()
                job = jobs.get()  # idle: block until there is work
                self.idle.clear()
                if job is None:
                    return
                waiting.append(job)
            while not jobs.empty():  # take everything submitted meanwhile
                if (job := jobs.get()) is None:
                    return
                bisect.insort(waiting, job, key=Job.order)
            if waiting or parked:
                self.admit(waiting, parked, active)
                counters["waiting_turns"] = len(waiting)
                counters["parked_turns"] = len(parked)
                counters["park_ms"] = round(self.park_s * 1000)
            if active or kv.ahead:
                counters["peak_batch_sequences"] = max(counters["peak_batch_sequences"], len(active))
                self.stepper.step(active)

    def admit(self, waiting: list[Job], parked: list[Running], active: list[Running]) -> None:
        """Start waiting turns, then resume parked ones, while there is a sequence to run them on: a free one, an
        idle session's, or (time slicing) a running turn's that has had its slice."""
        kv = self.kv
        for q in [q for q in parked if q.job.request.cancel.is_set()]:
            self.cancel_parked(q, parked)
        busy = {q.job.request.key for q in active}
        while waiting:
            job = waiting[0]
            if job.state == "abandoned":
                waiting.pop(0)
                continue
            kv.ahead.pop(job.request.key, None)  # what it had left is now the start of its prompt
            slot = kv.take(job.request.key, busy)
            if slot is None:
                if self.preempt(active, parked, busy, job.request.priority):
                    continue
                return  # every sequence is generating: the first in order starts when one frees
            waiting.pop(0)
            with self.lock:  # from here on a cancel is the decoder's to honour, within a step
                if job.state == "abandoned":
                    continue
                job.state = "running"
            self.notes.line_came(job.request.key, job.submitted, kv.slots, kv.host)
            busy.add(job.request.key)
            try:
                q = self.start(job, slot)
                follow(kv, q, active)
                active.append(q)
            except Exception as exc:  # a bad prompt ends this turn, never the engine
                kv.drop(job.request.key)
                job.emit(Finish("error", queue_ms=job.queue_ms(), error=str(exc)[:200]))
        while parked:
            q = parked[0]
            t0 = self.clock()
            slot = kv.take(q.job.request.key, busy)
            self.park_s += self.clock() - t0
            if slot is None:
                if self.preempt(active, parked, busy, q.job.request.priority):
                    continue
                return
            parked.pop(0)
            self.resume(q, slot)
            busy.add(q.job.request.key)
            active.append(q)

    def start(self, job: Job, slot: Slot) -> Running:
        """Plan the turn's prompt against what its sequence holds, keep what it can reuse, and set it running."""
        request, kv, notes, counters = job.request, self.kv, self.notes, self.counters
        text, prompt, cut = self.planner.prompt(request, slot.tokens, notes.cuts.get(request.key, 0))
        if cut:
            notes.cuts[request.key] = cut
        else:
            notes.cuts.pop(request.key, None)
        keep = common_prefix(slot.tokens, prompt)
        if keep < len(slot.tokens) and text is not None:
            prompt, keep = self.planner.match_text(slot, text, prompt, keep)
        if keep < len(prompt) - 1 and self.planner.can_shift:
            keep = shift(kv, slot, prompt, keep)
        keep = share_prefix(kv, slot, prompt, keep)
        keep = min(keep, len(prompt) - 1)  # at least one token is decoded, for fresh logits
        C.llama_memory_seq_rm(kv.mem, slot.seq, keep, -1)
        del slot.tokens[keep:]
        counters["reused_tokens"] += keep
        counters["prefilled_tokens"] += len(prompt) - keep
        counters["turns"] += 1
        return Running(
            job,
            slot,
            sampler(self.model, request, prompt),
            StopMatcher(request.stop),
            prompt_len=len(prompt),
            reused=keep,
            todo=prompt[keep:],
            queue_ms=job.queue_ms(),
            emitted_upto=keep,
            text=text,
            cut=cut,
        )

    def preempt(self, active: list[Running], parked: list[Running], busy: set[str], priority: int) -> bool:
        """Park the running turn furthest past its time slice, among those that have had one and do not outrank the
        turn that wants a sequence; False when there is none (or its KV cannot be kept)."""
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
        t0 = self.clock()
        parks = self.kv.park(key, q.slot)
        self.park_s += self.clock() - t0
        if not parks:
            return False
        active.remove(q)
        bisect.insort(parked, q, key=lambda q: -q.job.request.priority)  # after those parked before it
        busy.discard(key)
        self.counters["preemptions"] += 1
        return True

    def resume(self, q: Running, slot: Slot) -> None:
        """A parked turn goes on where it was, its KV restored into ``slot`` by ``KV.take``; if llama.cpp refused the
        restore, what the sequence held is prefilled again, then its pending token."""
        held = q.slot.tokens
        q.slot, q.slice_from = slot, q.produced
        if slot.tokens != held:
            C.llama_memory_seq_rm(self.kv.mem, slot.seq, -1, -1)
            slot.tokens = []
            q.todo = held + ([q.next_token] if q.next_token is not None else [])
            q.next_token = None
            self.counters["prefilled_tokens"] += len(q.todo)

    def cancel_parked(self, q: Running, parked: list[Running]) -> None:
        """A parked turn cancelled ends at once; its session's saved KV stays, as an idle session's."""
        parked.remove(q)
        self.kv.unpark(q.job.request.key, q.emitted_upto)
        C.llama_sampler_free(q.sampler)
        ended(q, "cancelled")
