"""Frames on their way into Redis: each session's frame stream (for resume on any node) and its channel (for the
clients of that session on other nodes).

Frames are sent to this node's own clients at once; here they are batched: everything a session emitted while
the previous batch was in flight goes in one ``APPEND`` script (one stream entry per frame, one channel message
for the batch), and all sessions' batches go in one pipeline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from . import scripts

log = structlog.get_logger("rtserver.fleet")


def session_keys(sid: str) -> list[str]:
    tag = f"rt:{{{sid}}}"
    return [f"{tag}:s", f"{tag}:f", f"{tag}:c"]


@dataclass
class _Batch:
    gen: int
    epoch: str
    first: int  # seq of frames[0]
    at: float
    frames: list[bytes] = field(default_factory=list)
    running: bytes = b""  # a turn started in this batch: who asked what (for a takeover to report it)


class FrameSink:
    def __init__(self, redis: Redis, frame_log: int, frame_log_ttl: float, *, on_fenced: Callable[[str], None]) -> None:
        self.redis = redis
        self.maxlen = frame_log
        self.ttl_ms = int(frame_log_ttl * 1000)
        self.on_fenced = on_fenced
        self._append = redis.register_script(scripts.APPEND)
        self._pending: dict[str, _Batch] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.failed_batches = 0

    async def load_script(self) -> None:
        """SCRIPT LOAD on every primary (redis-py sends it to each of a cluster's)."""
        try:
            await self.redis.script_load(scripts.APPEND)
        except RedisError as exc:
            log.warning("frames_script_not_loaded", error=str(exc))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="frame-sink")

    async def close(self) -> None:
        await self.drain()
        if self._task is not None:
            self._task.cancel()

    def add(self, sid: str, gen: int, epoch: str, seq: int, at: float, data: bytes, running: bytes = b"") -> None:
        b = self._pending.get(sid)
        if b is None or b.epoch != epoch or b.gen != gen:
            if b is not None:  # a new epoch or owner in the same batch window: the old frames go first
                self._pending[sid + "\0old"] = self._pending.pop(sid)
            b = self._pending[sid] = _Batch(gen, epoch, seq, at)
        b.frames.append(data)
        b.at = at
        if running:
            b.running = running
        self._idle.clear()
        self._wake.set()

    async def drain(self) -> None:
        """Until every frame added so far is in Redis (or failed)."""
        await self._idle.wait()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, {}
                await self._flush(batch)
            self._idle.set()

    async def _flush(self, batches: dict[str, _Batch], retry: bool = True) -> None:
        from .store import pack

        pipe = self.redis.pipeline(transaction=False)
        order = []
        for key, b in batches.items():
            sid = key.split("\0", 1)[0]
            order.append(sid)
            msg = pack([b.epoch, b.first, b.frames])
            args: list[Any] = [b.gen, b.epoch, b.first, self.maxlen, self.ttl_ms, b.at, msg, b.running, *b.frames]
            # EVALSHA itself, not the script object: with a script object redis-py asks SCRIPT EXISTS first,
            # a round trip more per batch. The script is loaded at start; a node without it is handled below.
            pipe.evalsha(self._append.sha, 3, *session_keys(sid), *args)
        try:
            results = await pipe.execute(raise_on_error=False)
            again = {k: b for k, r in zip(batches, results, strict=True) if isinstance(r, NoScriptError)}
            if again and retry:  # a Redis restarted or a replica promoted has no scripts: load them, and send again
                await self.load_script()  # what was refused (it wrote nothing)
                await self._flush(again, retry=False)
                results = [r for r in results if not isinstance(r, NoScriptError)]
                order = [sid for sid, k in zip(order, batches, strict=True) if k not in again]
        except RedisError as exc:
            self.failed_batches += 1
            log.warning("frames_not_written", sessions=len(order), error=str(exc))
            return
        for sid, r in zip(order, results, strict=True):
            if isinstance(r, Exception):
                self.failed_batches += 1
                log.warning("frames_not_written", sid=sid, error=str(r))
            elif r == -1:
                self.on_fenced(sid)
