"""The audit log's writer: records appended without waiting, written off the event loop in batches.

``append`` is O(1) and never drops a record: records wait in memory until the writer (a task handing each batch
to a thread: JSON, hashing, write, one fsync per batch) has them on disk. If the disk is slow and ``capacity``
records are waiting, ``full`` turns true: new turns are refused with ``busy`` (the admission filter asks) and
``/readyz`` says degraded, until the backlog drains. ``close`` (SIGTERM) writes everything still waiting.

Files: ``<dir>/<node>-<first seq>.jsonl``, a new one when the current passes ``rotate_bytes``; the chain runs on
across files. Every ``checkpoint_every`` records (and at close) the head is appended to
``<dir>/<node>.checkpoints``, so records cut from the end are found by ``verify``.

Clustered (``redis``: a synchronous client, used only from the writer's thread), each batch is also added to the
stream ``rt:audit:<node>`` for collection and each checkpoint set as ``rt:audit:head:<node>``: a copy kept off
the node, which the node cannot quietly rewrite. Redis failing never holds the log up: the copy is skipped for
a few seconds (counted in ``not_copied``) and the records stay on disk.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson
import structlog

from .chain import Head, seal
from .erase import erase_file, node_lock

log = structlog.get_logger("rtserver.audit")
STREAM_MAX = 1_000_000  # records kept in a node's Redis stream (collectors read it well before that)


def files(directory: Path, node: str | None = None) -> list[Path]:
    """The log files in chain order (per node: their names carry the first seq, zero-padded)."""
    return sorted(directory.glob(f"{node}-*.jsonl" if node else "*-*.jsonl"))


class AuditLog:
    def __init__(
        self,
        directory: Path,
        node: str,
        *,
        capacity: int = 10_000,
        batch: int = 512,
        checkpoint_every: int = 1000,
        rotate_bytes: int = 64 << 20,
        fsync: bool = True,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.dir, self.node = Path(directory), node
        self.capacity, self.batch, self.checkpoint_every = capacity, batch, checkpoint_every
        self.rotate_bytes, self.fsync, self.wall = rotate_bytes, fsync, wall
        self.waiting: deque[tuple[dict[str, Any], dict[str, Any]]] = deque()
        self.writing = 0  # records taken by the writer and not yet on disk
        self.written = 0
        self.head = Head()
        self._file: IO[bytes] | None = None
        self._since_checkpoint = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._erasing = asyncio.Lock()  # an erase and a batch never touch the files at once
        self._lock: Any = None
        self._task: asyncio.Task[None] | None = None
        self.slow_disk: Callable[[], None] | None = None  # benchmarks: a throttled disk, called per batch
        self.redis: Any = None
        self.not_copied = 0
        self._redis_down_until = 0.0

    @property
    def full(self) -> bool:
        return len(self.waiting) + self.writing >= self.capacity

    def append(self, kind: str, header: dict[str, Any], body: dict[str, Any]) -> None:
        self.waiting.append(({"at": round(self.wall(), 6), "node": self.node, "kind": kind, **header}, body))
        self._wake.set()

    # --- the writer -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._resume)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="audit-writer")

    async def close(self) -> None:
        """Write everything still waiting (SIGTERM), then a checkpoint. The writer ends once nothing waits
        (it is never cancelled in the middle of a batch: two batches must never be written at once)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await asyncio.to_thread(self._close_file)
        log.info("audit_closed", records=self.written, head=self.head.seq)

    async def erase(self, *, sids: set[str] | None = None, users: set[str] | None = None) -> int:
        """Erase the bodies of these sessions' or users' records, between the writer's batches."""
        async with self._erasing:
            return await asyncio.to_thread(self._erase, sids or set(), users or set())

    def _erase(self, sids: set[str], users: set[str]) -> int:
        n = 0
        if self._file is not None:
            self._file.close()
        for path in files(self.dir, self.node):
            n += erase_file(path, sids, users)
        current = files(self.dir, self.node)
        self._file = current[-1].open("ab") if current else None
        if self._file is None:
            self._open(None)
        return n

    async def _run(self) -> None:
        while True:
            while self.waiting:
                async with self._erasing:
                    await self._write_some()
            if self._closing:
                return
            await self._wake.wait()
            self._wake.clear()

    async def _write_some(self) -> None:
        n = min(len(self.waiting), self.batch)
        items = [self.waiting.popleft() for _ in range(n)]
        self.writing = n
        try:
            await asyncio.to_thread(self._write, items)
        except OSError as exc:  # the disk failed: the records go back to wait for it, in order
            self.waiting.extendleft(reversed(items))
            log.error("audit_write_failed", error=str(exc), waiting=len(self.waiting))
            await asyncio.sleep(1.0)  # a failing disk is retried once a second, not in a hot loop
        finally:
            self.writing = 0

    # --- in the writer's thread -------------------------------------------------------------------------------

    def _resume(self) -> None:
        """Take the node's lock (another process erasing waits for it) and continue the chain of its last file."""
        self._lock = node_lock(self.dir, self.node, wait=True)
        self._lock.__enter__()
        existing = files(self.dir, self.node)
        for path in reversed(existing):  # the newest file may be empty (rotated just before a stop)
            lines = [x for x in path.read_bytes().splitlines() if x.strip()]
            if lines:
                rec = orjson.loads(lines[-1])
                self.head = Head(int(rec["h"]["seq"]), str(rec["id"]))
                break
        self._open(existing[-1] if existing else None)

    def _open(self, path: Path | None) -> None:
        path = path or self.dir / f"{self.node}-{self.head.seq + 1:012d}.jsonl"
        self._file = path.open("ab")

    def _write(self, items: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
        assert self._file is not None
        lines = [seal(self.head, h, b) for h, b in items]
        data = b"".join(lines)
        if self.slow_disk is not None:
            self.slow_disk()
        self._file.write(data)
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())
        self.written += len(items)
        self._copy(lambda r: [r.xadd(f"rt:audit:{self.node}", {"r": x.rstrip()}, maxlen=STREAM_MAX) for x in lines])
        self._since_checkpoint += len(items)
        if self._since_checkpoint >= self.checkpoint_every:
            self._checkpoint()
        if self._file.tell() >= self.rotate_bytes:
            self._file.close()
            self._open(None)

    def _checkpoint(self) -> None:
        self._since_checkpoint = 0
        cp = orjson.dumps({"seq": self.head.seq, "hash": self.head.hash, "at": self.wall()})
        with (self.dir / f"{self.node}.checkpoints").open("ab") as f:
            f.write(cp + b"\n")
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        self._copy(lambda r: [r.set(f"rt:audit:head:{self.node}", cp)])

    def _copy(self, commands: Callable[[Any], object]) -> None:
        """The clustered copy, in one pipeline; skipped (and counted) while Redis fails."""
        if self.redis is None or time.monotonic() < self._redis_down_until:
            if self.redis is not None:
                self.not_copied += 1
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            commands(pipe)
            pipe.execute()
        except Exception as exc:  # noqa: BLE001 - any Redis failure: the log goes on without its copy
            self._redis_down_until = time.monotonic() + 5.0
            self.not_copied += 1
            log.warning("audit_copy_failed", error=type(exc).__name__)

    def _close_file(self) -> None:
        if self._file is not None:
            if self._since_checkpoint:
                self._checkpoint()
            self._file.close()
            self._file = None
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None
