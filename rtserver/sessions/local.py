"""The embedded store: one journal file per session under ``data_dir/sessions/``, written in groups.

Start-up reads nothing but the directory's existence, so it costs the same with a million sessions stored as
with none; a session's file is read when a frame names it. A file grows by a record per write and is compacted
when its session leaves memory, if it has grown past 1.5 times its live state. Damage is found where a file is read
(loading a session, ``scrub``, ``rtserver journal check``): a torn tail is cut off, a damaged record in the middle
is skipped and reported, and a file with damage is copied to ``data_dir/damaged/`` before it is rewritten.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog

from ..errors import Fenced, StoreFailed
from . import records as R
from .history import TurnNode
from .journal import Scan, Writer, scan
from .store import TID_BLOCK, FrameLogState, Loaded, SessionData

log = structlog.get_logger("rtserver.store")

COMPACT_AT = 1.5  # a file is rewritten when it has grown past this many times its live state (bound: 2x)
SID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what a session id may be: also what keeps a path inside data_dir


class LocalStore:
    def __init__(self, data_dir: Path, node_id: str, *, fsync: bool = True, session_ttl: float = 0.0) -> None:
        self.node_id = node_id
        self.root = data_dir / "sessions"
        self.aside = data_dir / "damaged"
        self.data_dir = data_dir
        self.session_ttl = session_ttl
        self.degraded = False  # the last write failed (disk full, I/O error): /readyz says so
        self.damaged_records = 0  # damaged records found and skipped since start-up
        self.writer = Writer(fsync=fsync, on_write=self._wrote)
        self._owner: dict[str, int] = {}  # sid -> the generation that may write it
        self._gen = 0
        self._damaged: set[str] = set()  # sessions in memory whose file had damage when read

    def path(self, sid: str) -> Path:
        return self.root / sid[:2] / f"{sid}.log"

    def _wrote(self, ok: bool) -> None:
        if ok == self.degraded:
            log.warning("store_degraded" if not ok else "store_recovered", data_dir=str(self.data_dir))
        self.degraded = not ok

    # --- lifecycle and ownership ------------------------------------------------------------------------------

    async def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        old = self.data_dir / "sessions.journal"
        if old.exists():
            from .migrate import migrate_journal

            migrated = migrate_journal(old, self.path)
            log.info("journal_migrated", sessions=migrated, moved_to=str(old) + ".migrated")
        self.writer.start()

    async def close(self) -> None:
        await self.writer.close()

    async def acquire(self, sid: str) -> int:
        self._gen += 1
        self._owner[sid] = self._gen
        return self._gen

    async def renew(self, sid: str, gen: int) -> bool:
        return self._owner.get(sid) == gen

    def _check(self, sid: str, gen: int) -> Path:
        if self._owner.get(sid) != gen:
            raise Fenced(f"session {sid} is owned by another writer now")
        return self.path(sid)

    async def _write(self, sid: str, gen: int, data: bytes) -> None:
        try:
            await self.writer.submit("append", self._check(sid, gen), data)
        except OSError as exc:
            raise StoreFailed(f"{exc.strerror or exc}") from exc

    # --- writes -----------------------------------------------------------------------------------------------

    async def create(self, data: SessionData, gen: int, epoch: str = "") -> int:
        await self._write(data.sid, gen, R.open_record(data, TID_BLOCK))
        return TID_BLOCK

    async def save_turn(self, sid: str, gen: int, node: TurnNode) -> None:
        await self._write(sid, gen, R.turn_record(sid, node))

    async def reserve_tids(self, sid: str, gen: int, upto: int) -> None:
        await self._write(sid, gen, R.tids_record(sid, upto))

    async def set_head(self, sid: str, gen: int, head: int) -> None:
        await self._write(sid, gen, R.head_record(sid, head))

    async def update(self, sid: str, gen: int, persona: str | None, params: dict[str, Any]) -> None:
        await self._write(sid, gen, R.update_record(sid, persona, params))

    async def update_story(self, sid: str, gen: int, story: dict[str, Any]) -> None:
        await self._write(sid, gen, R.story_record(sid, story))

    async def delete(self, sid: str, gen: int) -> None:
        path = self._check(sid, gen)
        try:
            await self.writer.submit("delete", path)
        except OSError as exc:
            raise StoreFailed(f"{exc.strerror or exc}") from exc
        self._owner.pop(sid, None)
        self._damaged.discard(sid)

    async def park(self, sid: str, gen: int, data: SessionData, reserved: int, frames: FrameLogState) -> None:
        """The session leaves memory: its frame log is kept, and its file compacted if it has grown past
        ``COMPACT_AT`` times its live state (a file with damage is copied aside first and always rewritten)."""
        path = self._check(sid, gen)
        whole = R.compacted(data, reserved, frames)
        size = await asyncio.to_thread(_size, path)
        try:
            if sid in self._damaged or size > COMPACT_AT * len(whole):
                if sid in self._damaged:
                    await asyncio.to_thread(self._keep_aside, sid, path)
                await self.writer.submit("replace", path, whole)
            else:
                # Not synced: lost in a crash, it costs a new epoch (a snapshot on resume), never a turn.
                record = R.parked_record(sid, data.history.next_tid, frames)
                await self.writer.submit("append", path, record, sync=False)
        except OSError as exc:
            raise StoreFailed(f"{exc.strerror or exc}") from exc
        finally:
            self._owner.pop(sid, None)
            self._damaged.discard(sid)

    def _keep_aside(self, sid: str, path: Path) -> None:
        self.aside.mkdir(parents=True, exist_ok=True)
        dest = self.aside / f"{sid}.{int(time.time())}.log"
        shutil.copy2(path, dest)
        log.warning("journal_kept_aside", sid=sid, path=str(dest))

    # --- reads ------------------------------------------------------------------------------------------------

    async def load(self, sid: str) -> Loaded | None:
        if not SID.fullmatch(sid):
            return None
        found = await asyncio.to_thread(self._read, sid)
        if found is None:
            return None
        result = R.rebuild(sid, [r for _, r in found.records])
        if found.damage:
            self._damaged.add(sid)
        return result

    def _read(self, sid: str) -> Scan | None:
        path = self.path(sid)
        try:
            os.utime(path)  # used now: the TTL counts from here (and a concurrent expiry sees it)
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        found = scan(data)
        self._report(sid, path, found)
        if found.torn_at is not None:
            os.truncate(path, found.torn_at)
        return found

    def _report(self, sid: str, path: Path, found: Scan) -> None:
        for d in found.damage:
            self.damaged_records += 1
            log.error("journal_damaged_record", sid=sid, path=str(path), offset=d.offset, bytes=d.length, why=d.why)
        if found.torn_at is not None:
            log.warning(
                "journal_torn_tail", sid=sid, path=str(path), offset=found.torn_at, bytes=found.size - found.torn_at
            )

    async def scrub(self) -> int:
        """Read every stored file and report its damage (nothing is changed); returns the damaged records."""
        return await asyncio.to_thread(self._scrub)

    def _scrub(self) -> int:
        damaged = 0
        for path in self.files():
            try:
                found = scan(path.read_bytes())
            except FileNotFoundError:
                continue
            if found.damage:
                damaged += len(found.damage)
                self._report(path.stem, path, found)
        return damaged

    def files(self) -> Iterator[Path]:
        for sub in _dirs(self.root):
            for entry in os.scandir(sub):
                if entry.name.endswith(".log"):
                    yield Path(entry.path)

    async def expire(self, now: float, keep: set[str]) -> int:
        """Delete the sessions not used for ``session_ttl`` seconds, except those in ``keep`` (in memory)."""
        if self.session_ttl <= 0:
            return 0
        return await asyncio.to_thread(self._expire, now - self.session_ttl, keep)

    def _expire(self, before: float, keep: set[str]) -> int:
        gone = 0
        for path in self.files():
            try:
                if path.stem not in keep and path.stat().st_mtime < before:
                    path.unlink()
                    gone += 1
            except FileNotFoundError:
                continue
        return gone


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _dirs(root: Path) -> list[str]:
    try:
        return [e.path for e in os.scandir(root) if e.is_dir()]
    except FileNotFoundError:
        return []
