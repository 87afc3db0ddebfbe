"""The cross-node ``Store``: sessions, their turns and their frame logs in Redis (ADR 0007).

A session is owned by one node at a time, the node that holds its KV. Ownership is a generation in the session's
state (``gen``), taken by the ``ACQUIRE`` script and checked by every write, plus the owner's node lease
(``rt:node:<owner>``, renewed by ``NodeLease``): while the lease lives, frames for the session anywhere are
relayed to its owner; once it has expired, the next node that needs the session takes it over.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import fields
from typing import Any

import msgpack
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..errors import Fenced, StoreFailed
from ..sessions.history import TurnNode
from ..sessions.session import new_epoch
from ..sessions.store import TID_BLOCK, FrameLogState, Loaded, OwnedElsewhere, SessionData
from . import scripts
from .fallback import Fallback
from .frames import FrameSink

log = structlog.get_logger("rtserver.fleet")

# Each SessionData field is a field of its own in the state hash (``d.persona``, ``d.params``, ``d.story``, ...),
# so an update writes what changed without reading the rest first (it can then be journalled while Redis is down).
_DATA = [f.name for f in fields(SessionData) if f.name not in ("sid", "history", "owner")]
_NODE = [f.name for f in fields(TurnNode)]


def keys(sid: str) -> tuple[str, str, str, str]:
    """A session's state, turns, frame stream and channel: one hash tag, one slot."""
    tag = f"rt:{{{sid}}}"
    return f"{tag}:s", f"{tag}:t", f"{tag}:f", f"{tag}:c"


def node_key(owner: str) -> str:
    return f"rt:node:{owner}"


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False)


class RedisStore:
    def __init__(
        self,
        redis: Redis,
        node_id: str,
        *,
        frame_log: int,
        frame_log_ttl: float,
        session_ttl: float,
        fallback: Fallback | None = None,
    ) -> None:
        self.redis = redis
        self.node_id = node_id  # this incarnation's name: a restarted node is a new owner
        self.failing = False  # the last call to Redis failed
        self.damaged_records = 0
        self.frame_log = frame_log
        self.ttl_ms = int(session_ttl * 1000)
        self._acquire = redis.register_script(scripts.ACQUIRE)
        self._write = redis.register_script(scripts.WRITE)
        self._delete = redis.register_script(scripts.DELETE)
        self._release = redis.register_script(scripts.RELEASE)
        self.frames = FrameSink(redis, frame_log, frame_log_ttl, on_fenced=self._fenced)
        self.fenced_writes = 0
        self.alive: Any = None  # set by the server: is this owner's node lease alive? (async, owner -> bool)
        self.fallback = fallback
        self._watch: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.frames.load_script()
        self.frames.start()
        if self.fallback is not None:
            self.fallback.start()
            if self.fallback.pending:
                self._write_back_later()

    async def close(self) -> None:
        await self.frames.close()
        if self._watch is not None:
            self._watch.cancel()
        if self.fallback is not None:
            await self.fallback.close()

    @property
    def degraded(self) -> bool:
        return self.failing or bool(self.fallback and self.fallback.pending)

    def _write_back_later(self) -> None:
        assert self.fallback is not None
        if self._watch is None or self._watch.done():
            self._watch = asyncio.get_running_loop().create_task(
                self.fallback.watch(self.redis.ping, self._fenced_write, self._keep_stale, self._written_back)
            )

    def _written_back(self) -> None:
        log.warning("store_recovered", store="redis", written_back=self.fallback.written_back if self.fallback else 0)
        self.failing = False

    def _fenced(self, sid: str) -> None:
        self.fenced_writes += 1
        log.warning("fenced_write_refused", sid=sid, node=self.node_id)

    async def _call(self, what: str, coro: Any) -> Any:
        try:
            result = await coro
        except RedisError as exc:
            self._wrote(False)
            log.warning("redis_call_failed", call=what, error=str(exc))
            raise StoreFailed("the session store (Redis) cannot be reached; retry shortly") from exc
        self._wrote(True)
        return result

    def _wrote(self, ok: bool) -> None:
        if ok == self.failing:
            log.warning("store_degraded" if not ok else "store_reachable", store="redis")
        self.failing = not ok

    # --- ownership --------------------------------------------------------------------------------------------

    async def acquire(self, sid: str) -> int:
        return 1  # a new session: ``create`` writes generation 1; existing ones are taken in ``load``

    async def renew(self, sid: str, gen: int) -> bool:
        s, *_ = keys(sid)
        return bool(await self._call("read", self.redis.hget(s, "gen")) == str(gen).encode())

    async def _take(self, sid: str) -> tuple[int, str]:
        """Own the session: (gen, 'mine' | 'clean' | 'takeover'), or (-1, '') if it does not exist; raises
        ``OwnedElsewhere`` while another live node owns it."""
        s, _, f, _ = keys(sid)
        seen = ""
        for _ in range(4):  # the owner can change between the look and the script: look again
            args: list[Any] = [self.node_id, seen, time.time(), new_epoch()]
            gen, how = await self._call("acquire", self._acquire(keys=[s, f], args=args))
            how = how.decode() if isinstance(how, bytes) else str(how)
            if gen != -2:
                return int(gen), how
            if how and self.alive is not None and await self.alive(how):
                raise OwnedElsewhere(how)
            seen = how
        raise StoreFailed(f"session {sid} changed owner four times while this node tried to take it")

    # --- reads ------------------------------------------------------------------------------------------------

    async def load(self, sid: str) -> Loaded | None:
        if not 0 < len(sid) <= 64:
            return None
        if self.fallback is not None and sid in self.fallback.pending:
            raise StoreFailed("this session's last turns wait for Redis to return; retry shortly")
        gen, how = await self._take(sid)
        if gen == -1:
            return None
        state, turns, entries = await self._read(sid, "load")
        found = self._rebuild(sid, state, turns)
        h = found.data.history
        if how == "takeover":  # the dead owner may have handed out any reserved id
            h.next_tid = max(h.next_tid, found.reserved + 1)
        else:
            h.next_tid = max(h.next_tid, int(state.get(b"next_tid", 1)))
        frames = [e[1][b"d"] for e in entries]  # none after a takeover: the script deleted them
        epoch = state.get(b"epoch", b"").decode()
        found.log = FrameLogState(epoch, int(state.get(b"seq", 0)), frames, float(state.get(b"at", 0)))
        found.gen = gen
        if how == "takeover":
            log.info("session_taken_over", sid=sid, gen=gen)
            await self._lost_turn(found, state.get(b"running"))
        return found

    async def _lost_turn(self, found: Loaded, running: bytes | None) -> None:
        """The turn the dead owner was running goes into the history as failed (``node_lost``), so its clients
        learn it ended, from the snapshot they get on resuming, and can retry it."""
        h = found.data.history
        r = unpack(running) if running else None
        if r is None or r["tid"] in h.nodes:
            return
        node = TurnNode(r["tid"], r["parent"], r["kind"], r["user"], reason="error", code="node_lost")
        await self.save_turn(found.data.sid, found.gen, node)
        h.commit(node)
        h.next_tid = max(h.next_tid, found.reserved + 1)

    @staticmethod
    def _rebuild(sid: str, state: dict[bytes, bytes], turns: dict[bytes, bytes]) -> Loaded:
        raw = {k[2:].decode(): unpack(v) for k, v in state.items() if k.startswith(b"d.")}
        data = SessionData(sid, **{"persona": None, "params": {}, "model": "default",
                                   **{k: v for k, v in raw.items() if k in _DATA}})  # fmt: skip
        h = data.history
        for rec in sorted((unpack(v) for v in turns.values()), key=lambda r: r["tid"]):
            h.commit(TurnNode(**{k: v for k, v in rec.items() if k in _NODE}))
        h.head = int(state.get(b"head", 0))
        reserved = int(state.get(b"reserved", TID_BLOCK))
        return Loaded(data, max(reserved, h.next_tid - 1), None)

    async def _read(self, sid: str, what: str) -> Any:
        """A session's state, turns and kept frames, in one round trip."""
        s, t, f, _ = keys(sid)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(s)
        pipe.hgetall(t)
        pipe.xrange(f, "-", "+")
        return await self._call(what, pipe.execute())

    async def view(self, sid: str) -> tuple[Loaded, str, list[bytes]] | None:
        """A session another node owns, as it stands in Redis: its state, its owner and the frames kept."""
        state, turns, entries = await self._read(sid, "read")
        if not state:
            return None
        found = self._rebuild(sid, state, turns)
        frames = [e[1][b"d"] for e in entries]
        epoch = state.get(b"epoch", b"").decode()
        found.log = FrameLogState(epoch, int(state.get(b"seq", 0)), frames, float(state.get(b"at", 0)))
        return found, state.get(b"owner", b"").decode(), frames

    # --- writes -----------------------------------------------------------------------------------------------

    async def _write_or_keep(self, sid: str, gen: int, state: dict[str, Any], turns: dict[str, bytes]) -> None:
        """An owner's write: to Redis, or, while Redis is unreachable, to the local journal to write back later
        (after any kept before it, so the order holds)."""
        if self.fallback is not None and self.fallback.pending:
            await self.fallback.keep(sid, gen, state, turns)
            return
        try:
            await self._fenced_write(sid, gen, state, turns)
        except StoreFailed as exc:
            if self.fallback is None or isinstance(exc, Fenced):
                raise
            log.warning("redis_unreachable_journalling_locally", sid=sid, error=exc.message)
            await self.fallback.keep(sid, gen, state, turns)
            self._write_back_later()

    async def _keep_stale(self, sid: str, gen: int, state: dict[str, Any], turns: dict[str, bytes]) -> None:
        if turns:
            await self.redis.hset(f"rt:{{{sid}}}:stale", mapping=turns)  # type: ignore[arg-type]

    async def _fenced_write(self, sid: str, gen: int, state: dict[str, Any], turns: dict[str, bytes]) -> None:
        s, t, f, _ = keys(sid)
        args: list[Any] = [gen, self.ttl_ms, len(state)]
        for k, v in state.items():
            args += [k, v]
        for k, v in turns.items():
            args += [k, v]
        if await self._call("write", self._write(keys=[s, t, f], args=args)) == -1:
            self._fenced(sid)
            raise Fenced(f"session {sid} is owned by another node now")

    @staticmethod
    def _data(data: SessionData) -> dict[str, bytes]:
        return {f"d.{k}": pack(getattr(data, k)) for k in _DATA}

    async def create(self, data: SessionData, gen: int, epoch: str = "") -> int:
        s, t, _, _ = keys(data.sid)
        state = {**self._data(data), "owner": self.node_id, "gen": gen, "reserved": TID_BLOCK, "head": 0,
                 "epoch": epoch, "seq": 0, "clean": 0, "used": time.time()}  # fmt: skip
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(s, mapping=state)  # type: ignore[arg-type]
        if self.ttl_ms:
            pipe.pexpire(s, self.ttl_ms)
        await self._call("create", pipe.execute())
        return TID_BLOCK

    async def save_turn(self, sid: str, gen: int, node: TurnNode) -> None:
        await self._write_or_keep(sid, gen, {"head": node.tid, "running": ""}, {str(node.tid): pack(node.to_dict())})

    async def reserve_tids(self, sid: str, gen: int, upto: int) -> None:
        await self._write_or_keep(sid, gen, {"reserved": upto}, {})

    async def set_head(self, sid: str, gen: int, head: int) -> None:
        await self._write_or_keep(sid, gen, {"head": head}, {})

    async def update(self, sid: str, gen: int, persona: str | None, params: dict[str, Any]) -> None:
        await self._write_or_keep(sid, gen, {"d.persona": pack(persona), "d.params": pack(params)}, {})

    async def update_story(self, sid: str, gen: int, story: dict[str, Any]) -> None:
        await self._write_or_keep(sid, gen, {"d.story": pack(story)}, {})

    async def delete(self, sid: str, gen: int) -> None:
        await self.frames.drain()  # its last frames reach the stream and the other nodes first
        s, t, f, _ = keys(sid)
        if await self._call("delete", self._delete(keys=[s, t, f], args=[gen])) == -1:
            self._fenced(sid)
            raise Fenced(f"session {sid} is owned by another node now")

    async def park(self, sid: str, gen: int, data: SessionData, reserved: int, frames: FrameLogState) -> None:
        """The session leaves memory: its frames are written first, then nobody owns it and any node may take it
        with the same epoch and seq."""
        await self.frames.drain()
        if self.fallback is not None and sid in self.fallback.pending:
            return  # its writes wait for Redis: it stays this node's until they are back (``load`` waits too)
        s, *_ = keys(sid)
        h = data.history
        fields_ = [x for kv in self._data(data).items() for x in kv]
        args: list[Any] = [gen, *fields_, "reserved", reserved, "next_tid", h.next_tid, "head", h.head,
                           "epoch", frames.epoch, "seq", frames.last_seq, "at", frames.last_at]  # fmt: skip
        if await self._call("release", self._release(keys=[s], args=args)) == -1:
            self._fenced(sid)
            raise Fenced(f"session {sid} is owned by another node now")

    async def expire(self, now: float, keep: set[str]) -> int:
        return 0  # Redis expires a session's keys itself: every write sets their TTL (session_ttl)

    async def scrub(self) -> int:
        return 0  # Redis keeps its own checksums (RDB/AOF); there is no journal of ours to read
