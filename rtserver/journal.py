"""An append-only journal of session records with group commit: every record appended while a write is in
flight goes out in the next write, under one fsync. ``await journal.append(record)`` returns once the record is
on disk, which is when a turn may be reported complete.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson


class Journal:
    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = path
        self._fsync = fsync
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._fd = -1
        self._closing = False
        self.writes = 0  # how many fsyncs; records / writes is the group-commit factor

    @staticmethod
    def read(path: Path) -> Iterator[dict[str, Any]]:
        """The records in order; a torn last line (a crash mid-write) is ignored."""
        if not path.exists():
            return
        with open(path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    return
                try:
                    yield orjson.loads(line)
                except orjson.JSONDecodeError:
                    return

    def rewrite(self, records: list[dict[str, Any]]) -> None:
        """Replace the journal with ``records`` atomically (compaction at start-up)."""
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(b"".join(orjson.dumps(r) + b"\n" for r in records))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._task = asyncio.get_running_loop().create_task(self._writer(), name="journal")

    async def append(self, record: dict[str, Any]) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((orjson.dumps(record) + b"\n", fut))
        self._wake.set()
        await fut

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                if self._closing:
                    return
                continue
            self._wake.set()  # look again after this write: more may have come, or a close
            try:
                await asyncio.to_thread(self._write, b"".join(data for data, _ in batch))
            except OSError as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        if self._fsync:
            os.fsync(self._fd)
        self.writes += 1

    async def close(self) -> None:
        """Write what is queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
