"""The hand-off between the worker thread and the event loops: a turn's ``Job``, and the ``Outbox`` that carries a
step's events to an event loop with one wake-up."""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from .base import Event, Finish, Request


class Outbox:
    """Events from the worker thread to one event loop, handed over once per step. The worker queues a step's
    events, then wakes the loop with one byte down a pipe the loop watches, written without the GIL (os.write
    releases it) so that the woken loop can run at once; ``call_soon_threadsafe`` per event held the GIL while it
    woke the loop, which then slept again on a shared core (docs/adr/0005-engine-rooms.md)."""

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


class Outboxes:
    """One outbox per event loop that submits turns; the worker wakes them all after each step."""

    def __init__(self) -> None:
        self._by_loop: dict[asyncio.AbstractEventLoop, Outbox] = {}
        self.all: tuple[Outbox, ...] = ()  # replaced whole, so the worker never sees it change under it

    def of(self, loop: asyncio.AbstractEventLoop) -> Outbox:
        if (outbox := self._by_loop.get(loop)) is None:
            outbox = self._by_loop[loop] = Outbox(loop)
            self.all = tuple(self._by_loop.values())
        return outbox

    def wake(self) -> bool:
        """Hand what this step emitted to the event loops; whether there was anything."""
        woken = False
        for outbox in self.all:
            woken = outbox.wake() or woken
        return woken

    def close(self) -> None:
        for outbox in self._by_loop.values():
            outbox.close()
        self._by_loop.clear()
        self.all = ()


@dataclass
class Job:
    """A submitted turn: its request, where its events go, and when it was submitted (by the engine's clock)."""

    request: Request
    outbox: Outbox
    out: asyncio.Queue[Event]
    submitted: float
    clock: Callable[[], float]
    state: str = "queued"  # queued -> running (worker) or abandoned (cancelled while queued); under the lock

    def emit(self, event: Event) -> None:
        self.outbox.put(self.out, event)

    def queue_ms(self) -> float:
        return (self.clock() - self.submitted) * 1000

    def order(self) -> tuple[int, float]:
        """Waiting turns start in this order: highest priority first, then first come, first served."""
        return (-self.request.priority, self.submitted)


@dataclass
class Inbox:
    """Turns submitted on the event loops, for the worker thread (a None stops it)."""

    jobs: queue.SimpleQueue[Job | None] = field(default_factory=queue.SimpleQueue)
    lock: threading.Lock = field(default_factory=threading.Lock)  # a job's state: queued -> running or abandoned
    idle: threading.Event = field(default_factory=threading.Event)  # set while the worker waits for a turn


async def events(job: Job) -> AsyncIterator[Event]:
    """A job's events as the event loop receives them, up to its Finish."""
    try:
        while True:
            event = await job.out.get()
            yield event
            if isinstance(event, Finish):
                return
    finally:
        job.request.cancel.set()  # a consumer that stops listening stops the generation too
