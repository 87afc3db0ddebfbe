"""Frames for a session owned by another node, carried to that node and answered.

The asking node adds a request to the owner's inbox stream (``rt:node:<owner>:in``); the owner carries it out on
its own session and adds the answer to the asker's stream (``rt:node:<asker>:out``). A stream, not pub/sub: a
request is not lost to a subscriber that was reconnecting. A request unanswered in time is sent again with the
same id, and the owner answers a repeated id from what it did the first time, so a ``say`` is never lost and never
run twice.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..errors import Busy, ClientError, RtError
from .store import pack, unpack

log = structlog.get_logger("rtserver.fleet")

INBOX_TTL_MS = 60_000  # a dead node's streams go away on their own
REMEMBER = 4096  # answered request ids kept for repeats


def inbox(node: str) -> str:
    return f"rt:node:{node}:in"


def outbox(node: str) -> str:
    return f"rt:node:{node}:out"


class OwnerGone(Exception):
    """The owner did not answer and its lease has expired, or it says the session is no longer its own."""


Handler = Callable[[str, str, dict[str, Any]], Awaitable[Any]]


class Rpc:
    def __init__(self, redis: Redis, blocking: Redis, node_id: str, *, timeout: float, attempts: int) -> None:
        self.redis, self.blocking, self.node_id = redis, blocking, node_id
        self.timeout, self.attempts = timeout, attempts
        self.handler: Handler | None = None  # the owner's side: carries out (sid, op, args)
        self.remaining: Callable[[str], Awaitable[float]] | None = None  # seconds left of a node's lease
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._done: OrderedDict[str, asyncio.Future[dict[str, Any]]] = OrderedDict()
        self._tasks: list[asyncio.Task[None]] = []
        self.forwarded = self.served = 0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read(inbox(self.node_id), self._serve), name="rpc-in"),
                       loop.create_task(self._read(outbox(self.node_id), self._answered), name="rpc-out")]  # fmt: skip

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()

    # --- asking -----------------------------------------------------------------------------------------------

    async def call(self, owner: str, sid: str, op: str, args: dict[str, Any]) -> Any:
        """Carry out ``op`` on the owner's session; its error, if any, is raised here as the owner's was."""
        rid = secrets.token_hex(8)
        fut = self._waiting[rid] = asyncio.get_running_loop().create_future()
        entry = {"rid": rid, "from": self.node_id, "sid": sid, "op": op, "args": pack(args)}
        try:
            return await self._call(rid, fut, owner, sid, op, entry)
        except RedisError:
            raise Busy("Redis, which carries this request to the session's node, is unreachable; retry shortly",
                       retry_after=1.0) from None  # fmt: skip
        finally:
            self._waiting.pop(rid, None)

    async def _call(
        self, rid: str, fut: asyncio.Future[dict[str, Any]], owner: str, sid: str, op: str, entry: dict[str, Any]
    ) -> Any:
        for _ in range(self.attempts):
            await self._add(inbox(owner), entry)
            try:
                answer = await asyncio.wait_for(asyncio.shield(fut), self.timeout)
                break
            except TimeoutError:
                pass
            # No answer: a dead owner's lease runs out on its own; wait for exactly that (or its answer).
            left = await self.remaining(owner) if self.remaining is not None else 0.0
            if left <= 0:
                raise OwnerGone(owner) from None
            try:
                answer = await asyncio.wait_for(asyncio.shield(fut), min(left + 0.05, self.timeout))
                break
            except TimeoutError:
                pass
        else:
            raise Busy(f"the node that holds session {sid} is not answering; retry shortly", retry_after=1.0)
        self.forwarded += 1
        if answer.get("moved"):
            raise OwnerGone(owner)
        if answer.get("code"):
            if answer["code"] == "busy":
                raise Busy(answer["message"], retry_after=float(answer.get("retry_after") or 1.0))
            raise ClientError(answer["message"], code=answer["code"])
        return answer.get("result")

    async def _add(self, stream: str, entry: dict[str, Any]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(stream, entry, maxlen=10_000, approximate=True)  # type: ignore[arg-type]
        pipe.pexpire(stream, INBOX_TTL_MS)
        await pipe.execute()

    async def _answered(self, fields: dict[bytes, bytes]) -> None:
        fut = self._waiting.get(fields[b"rid"].decode())
        if fut is not None and not fut.done():
            fut.set_result(unpack(fields[b"a"]))

    # --- answering (the owner) --------------------------------------------------------------------------------

    async def _serve(self, fields: dict[bytes, bytes]) -> None:
        rid, asker = fields[b"rid"].decode(), fields[b"from"].decode()
        fut = self._done.get(rid)
        if fut is None:  # the first time: carry it out; a repeat waits for (or re-sends) the same answer
            fut = self._done[rid] = asyncio.get_running_loop().create_future()
            if len(self._done) > REMEMBER:
                self._done.popitem(last=False)
            fut.set_result(await self._carry_out(fields))
        answer = await fut
        try:
            await self._add(outbox(asker), {"rid": rid, "a": pack(answer)})
        except RedisError as exc:
            log.warning("rpc_answer_lost", rid=rid, error=str(exc))  # the asker repeats the request

    async def _carry_out(self, fields: dict[bytes, bytes]) -> dict[str, Any]:
        assert self.handler is not None
        sid, op = fields[b"sid"].decode(), fields[b"op"].decode()
        try:
            result = await self.handler(sid, op, unpack(fields[b"args"]))
        except OwnerGone:
            return {"moved": True}
        except Busy as exc:
            return {"code": exc.code, "message": exc.message, "retry_after": exc.retry_after}
        except RtError as exc:
            return {"code": exc.code, "message": exc.message}
        except Exception:
            log.exception("rpc_failed", sid=sid, op=op)
            return {"code": "internal", "message": "the request failed on the session's node; retry it"}
        self.served += 1
        return {"result": result} if result is not None else {}

    async def _read(self, stream: str, on_entry: Callable[[dict[bytes, bytes]], Coroutine[Any, Any, None]]) -> None:
        last = "0-0"  # a node incarnation's streams are its own and new: read them from the start
        while True:
            got: Any
            try:
                got = await self.blocking.xread({stream: last}, block=5000, count=256)
            except RedisError as exc:
                log.warning("rpc_read_failed", stream=stream, error=str(exc))
                await asyncio.sleep(0.5)  # Redis is down: try again (a retry pace, not a synchronisation)
                continue
            for _, entries in got or ():
                for eid, fields in entries:
                    last = eid
                    if stream.endswith(":in"):  # requests run side by side; answers are quick
                        asyncio.get_running_loop().create_task(on_entry(fields))
                    else:
                        await on_entry(fields)
