"""The hand-over of engine events from the worker thread to the event loop (engine/outbox.py)."""

import asyncio
import sys
import threading

from rtserver.engine.base import Token
from rtserver.engine.outbox import Outbox

ROUNDS = 400


async def test_every_event_from_another_thread_arrives_once_and_in_order():
    """In each round a thread queues two bursts of events for three turns, waking the loop after each (as the
    worker does after each step), the second often while the loop is delivering the first; then it stops. Every
    event arrives, once and in order, in every round (a round whose events were left behind with no wake-up
    to come would wait until the 5 s bound fails the test)."""
    outbox = Outbox(asyncio.get_running_loop())
    queues: list[asyncio.Queue[Token]] = [asyncio.Queue() for _ in range(3)]
    go = threading.Semaphore(0)

    def worker() -> None:
        for r in range(ROUNDS):
            go.acquire()
            for burst in range(2):
                for k in range(3):
                    outbox.put(queues[k], Token(f"{r}.{burst}"))
                outbox.wake()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can: interleavings come up
    thread = threading.Thread(target=worker)
    thread.start()
    try:
        for r in range(ROUNDS):
            go.release()
            for q in queues:
                got = [(await asyncio.wait_for(q.get(), timeout=5)).text for _ in range(2)]
                assert got == [f"{r}.0", f"{r}.1"]
    finally:
        go.release(ROUNDS)
        thread.join()
        sys.setswitchinterval(interval)
    assert all(q.empty() for q in queues)  # nothing more
    assert not outbox.wake()  # nothing left to hand over
    outbox.close()


class _LoopWithoutReaders:
    """An event loop that cannot watch a file descriptor (as Windows' proactor loop cannot watch a pipe)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def add_reader(self, *args: object) -> None:
        raise NotImplementedError

    def __getattr__(self, name: str) -> object:
        return getattr(self._loop, name)


async def test_a_loop_that_cannot_watch_a_pipe_is_woken_the_usual_way():
    outbox = Outbox(_LoopWithoutReaders(asyncio.get_running_loop()))  # type: ignore[arg-type]
    out: asyncio.Queue[Token] = asyncio.Queue()

    def worker() -> None:
        for i in range(3):
            outbox.put(out, Token(str(i)))
        outbox.wake()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    got = [(await asyncio.wait_for(out.get(), timeout=5)).text for _ in range(3)]
    assert got == ["0", "1", "2"]
    outbox.close()
