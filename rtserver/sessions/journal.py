"""Journal files: framed records, and a writer that commits them in groups.

A record on disk is ``MAGIC | length (u32 LE) | CRC-32 of the payload (u32 LE) | payload`` with a msgpack map as
the payload. The magic is a sync marker: a reader that meets a record whose length or checksum is wrong skips to
the next marker, so damage costs the damaged record, never the records after it. A bad stretch that runs to the
end of the file with no good record after it is a torn tail (a crash mid-write): it was never acknowledged, and
the owner of the file cuts it off.

``Writer`` queues appends, atomic replacements and deletions of any number of files; everything queued while a
batch is being written goes out in the next batch, each file written and synced once per batch (group commit).
A failed write is rolled back to the file's previous end, so a full disk never leaves half a record behind.
"""

from __future__ import annotations

import asyncio
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgpack

MAGIC = b"\xd5rtJ"
_HEADER = struct.Struct("<4sII")
MAX_RECORD = 64 << 20  # a length beyond this is damage, not a record


def frame_record(payload: dict[str, Any]) -> bytes:
    body: bytes = msgpack.packb(payload, use_bin_type=True)
    return _HEADER.pack(MAGIC, len(body), zlib.crc32(body)) + body


@dataclass
class Damage:
    offset: int
    length: int
    why: str


@dataclass
class Scan:
    """What a file holds: its good records with their offsets, the damaged stretches between them, and where a
    torn tail starts (``None`` if the file ends cleanly)."""

    records: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)
    torn_at: int | None = None
    size: int = 0


def _record_at(data: bytes, pos: int) -> tuple[dict[str, Any] | None, int, str]:
    """The record at ``pos`` and where the next one starts, or None with the reason it is not one."""
    if data[pos : pos + 4] != MAGIC:
        return None, 0, "no record marker"
    if pos + _HEADER.size > len(data):
        return None, 0, "header cut short"
    _, length, crc = _HEADER.unpack_from(data, pos)
    end = pos + _HEADER.size + length
    if length > MAX_RECORD or end > len(data):
        return None, 0, "length past the end of the file"
    body = data[pos + _HEADER.size : end]
    if zlib.crc32(body) != crc:
        return None, 0, "checksum mismatch"
    try:
        payload = msgpack.unpackb(body, raw=False)
    except Exception:  # a checksum collision on garbage: as damaged as any other
        return None, 0, "not a msgpack record"
    if not isinstance(payload, dict):
        return None, 0, "not a map"
    return payload, end, ""


def scan(data: bytes) -> Scan:
    out = Scan(size=len(data))
    pos = 0
    while pos < len(data):
        payload, end, why = _record_at(data, pos)
        if payload is not None:
            out.records.append((pos, payload))
            pos = end
            continue
        nxt = data.find(MAGIC, pos + 1)
        stop = len(data) if nxt < 0 else nxt
        out.damage.append(Damage(pos, stop - pos, why))
        pos = stop
    last_good = out.records[-1][0] if out.records else -1
    tail = [d for d in out.damage if d.offset > last_good]
    if tail:
        out.torn_at = tail[0].offset
        out.damage = [d for d in out.damage if d.offset < last_good]
    return out


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_append(path: Path) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except FileNotFoundError:  # the file's directory is made with its first record
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


Op = Literal["append", "replace", "delete"]


@dataclass
class _Job:
    op: Op
    path: Path
    data: bytes
    done: asyncio.Future[None]
    sync: bool = True


class Writer:
    """Group commit over many files, written by one thread off the event loop."""

    def __init__(self, *, fsync: bool = True, on_write: Callable[[bool], None] = lambda ok: None) -> None:
        self._fsync = fsync
        self._on_write = on_write  # told after each file's write whether it succeeded (the store's health)
        self._pending: list[_Job] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.batches = 0  # write rounds; records / batches is the group-commit factor

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="journal-writer")

    async def submit(self, op: Op, path: Path, data: bytes = b"", *, sync: bool = True) -> None:
        """Queue one job and wait until it is written (and, unless ``sync`` is off for an append whose loss in a
        crash is harmless, on disk)."""
        if self._task is None:
            raise RuntimeError("the journal writer is not running")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(op, path, data, fut, sync))
        self._wake.set()
        await fut

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                if self._closing:
                    return
                continue
            self._wake.set()  # look again after this batch: more may have come, or a close
            results = await asyncio.to_thread(self._write, batch)
            for job, exc in zip(batch, results, strict=True):
                if job.done.done():
                    continue
                if exc is None:
                    job.done.set_result(None)
                else:
                    job.done.set_exception(exc)

    def _write(self, batch: list[_Job]) -> list[OSError | None]:
        """Each file's jobs in the order they came, consecutive appends in one write; a failure fails that
        file's later jobs in the batch too."""
        by_path: dict[Path, list[int]] = {}
        for i, job in enumerate(batch):
            by_path.setdefault(job.path, []).append(i)
        results: list[OSError | None] = [None] * len(batch)
        for path, idx in by_path.items():
            failed: OSError | None = None
            run: list[int] = []  # appends waiting to go out together
            for i in [*idx, -1]:  # -1: the end, which flushes the last run
                todo = batch[i] if i >= 0 else None
                if todo is not None and todo.op == "append":
                    run.append(i)
                    continue
                if run and failed is None:
                    sync = any(batch[j].sync for j in run)
                    failed = self._append(path, [batch[j].data for j in run], sync)
                for j in run:
                    results[j] = failed
                run.clear()
                if todo is None:
                    break
                if failed is None:
                    try:
                        self._replace(path, todo.data) if todo.op == "replace" else path.unlink(missing_ok=True)
                    except OSError as exc:
                        failed = exc
                results[i] = failed
            self._on_write(failed is None)
        self.batches += 1
        return results

    def _append(self, path: Path, chunks: list[bytes], sync: bool) -> OSError | None:
        try:
            fd = _open_append(path)
        except OSError as exc:
            return exc
        try:
            end = os.fstat(fd).st_size
            try:
                view = memoryview(b"".join(chunks))
                while view:
                    view = view[os.write(fd, view) :]
                if self._fsync and sync:
                    os.fsync(fd)
            except OSError as exc:
                try:  # leave no half record behind: the next append must start on a record boundary
                    os.ftruncate(fd, end)
                except OSError:
                    pass
                return exc
        finally:
            os.close(fd)
        return None

    def _replace(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                if self._fsync:
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        if self._fsync:
            fsync_dir(path.parent)

    async def close(self) -> None:
        """Write what is queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
