"""While Redis cannot be reached, an owner keeps serving its sessions: their writes go to a local journal
(``data_dir/redis-pending/<sid>.log``, fsynced, so ``turn.end`` still means durable) and are written back, in
order and through the same fencing check, when Redis answers again. A session another node took meanwhile is
not overwritten: the writes it refuses are kept beside it (``rt:{sid}:stale``) and reported.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from redis.exceptions import RedisError

from ..errors import Fenced, StoreFailed
from ..sessions.journal import Writer, frame_record, scan

log = structlog.get_logger("rtserver.fleet")

Write = Callable[[str, int, dict[str, Any], dict[str, bytes]], Awaitable[None]]
Op = tuple[int, dict[str, Any], dict[str, bytes]]  # gen, state fields, turn fields


class Fallback:
    def __init__(self, root: Path, *, fsync: bool) -> None:
        self.root = root
        self.writer = Writer(fsync=fsync)
        self.pending: dict[str, list[Op]] = {}
        self.stale_turns = 0
        self.written_back = 0

    def path(self, sid: str) -> Path:
        return self.root / f"{sid}.log"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.writer.start()
        for entry in os.scandir(self.root):  # left by a node that died while Redis was down: written back too
            if entry.name.endswith(".log"):
                found = scan(Path(entry.path).read_bytes())
                ops = [(int(r["gen"]), r["state"], r["turns"]) for _, r in found.records]
                if ops:
                    self.pending[entry.name[:-4]] = ops

    async def close(self) -> None:
        await self.writer.close()

    async def keep(self, sid: str, gen: int, state: dict[str, Any], turns: dict[str, bytes]) -> None:
        """Journal a write Redis did not take; raises ``StoreFailed`` if the local disk fails too."""
        record = frame_record({"sid": sid, "gen": gen, "state": state, "turns": turns})
        try:
            await self.writer.submit("append", self.path(sid), record)
        except OSError as exc:
            raise StoreFailed(f"Redis is unreachable and the local journal failed: {exc.strerror or exc}") from exc
        self.pending.setdefault(sid, []).append((gen, state, turns))

    async def write_back(self, write: Write, stale: Write) -> bool:
        """Write every kept session back to Redis; False if Redis failed again (try later)."""
        for sid in list(self.pending):
            ops = self.pending[sid]
            while ops:
                gen, state, turns = ops[0]
                try:
                    await write(sid, gen, state, turns)
                except Fenced:
                    await stale(sid, gen, state, turns)
                    self.stale_turns += len(turns)
                    log.warning("stale_turns_kept", sid=sid, turns=sorted(turns), key=f"rt:{{{sid}}}:stale")
                except (StoreFailed, RedisError):
                    return False
                ops.pop(0)
                self.written_back += 1
            del self.pending[sid]
            try:
                await self.writer.submit("delete", self.path(sid))
            except OSError:
                pass
        return True

    async def watch(
        self, ping: Callable[[], Awaitable[Any]], write: Write, stale: Write, done: Callable[[], None]
    ) -> None:
        """Until everything kept is back in Redis: try every half second (a retry pace, not a synchronisation)."""
        while self.pending:
            try:
                await ping()
            except RedisError:
                await asyncio.sleep(0.5)
                continue
            if await self.write_back(write, stale):
                break
            await asyncio.sleep(0.5)
        done()
