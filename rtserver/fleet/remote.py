"""Sessions across nodes: ``FleetSessions`` hands out a ``LocalHandle`` for a session this node owns (or takes)
and a ``RemoteHandle`` for one a live node owns: its frames come through the relay, its requests go to the owner.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

import structlog
from rtprotocol import Resume, encode_msgpack
from rtprotocol import frames as F

from ..errors import Busy, ClientError
from ..filters.base import CLIENT, Client
from ..principal import Principal
from ..sessions.handle import LocalHandle, SessionHandle, Sessions
from ..sessions.manager import SessionManager
from ..sessions.session import Session, Subscriber
from ..sessions.store import OwnedElsewhere
from ..sessions.turns import Turns
from .relay import Relay
from .rpc import OwnerGone, Rpc
from .store import RedisStore

log = structlog.get_logger("rtserver.fleet")

AHEAD_WAIT_S = 1.0  # how long a resume a moment ahead of the frame stream waits for the relay to catch up


def asker() -> dict[str, Any] | None:
    """The connection carrying out this frame, as a forwarded turn takes it to the owner."""
    c = CLIENT.get()
    if c is None:
        return None
    p = c.principal
    who: dict[str, Any] = {"ip": c.ip or c.peer, "traceparent": c.traceparent}
    if c.received:  # tracing on: when the frame reached this node, as wall-clock ns (the owner's trace starts there)
        who["received_ns"] = int(c.received * 1e9) + time.time_ns() - time.perf_counter_ns()
    if p is not None:
        who.update(user=p.user, kind=p.kind, limits=[list(kv) for kv in p.limits])
    return who


def as_client(who: dict[str, Any]) -> Client:
    principal = None
    if "user" in who:
        principal = Principal(user=who["user"], kind=who.get("kind", "anon"),
                              limits=tuple((str(k), float(v)) for k, v in who.get("limits") or ()))  # fmt: skip
    client = Client(peer="relay", ip=who.get("ip", ""), principal=principal, traceparent=who.get("traceparent", ""))
    if isinstance(who.get("received_ns"), int):  # on this node's clock; never after now (clocks of two machines)
        here = (who["received_ns"] - time.time_ns() + time.perf_counter_ns()) / 1e9
        client.received = min(here, time.perf_counter())
    return client


UNKNOWN = "no session with this id: it was closed, expired or never existed; open a new one"


class FleetSessions(Sessions):
    def __init__(
        self, manager: SessionManager, turns: Turns, store: RedisStore, relay: Relay, rpc: Rpc, cards: Any = None
    ) -> None:
        super().__init__(manager, turns, cards)
        self.store, self.relay, self.rpc = store, relay, rpc
        rpc.handler = self.serve

    async def get(self, sid: str) -> SessionHandle:
        try:
            return await self.local(sid)
        except OwnedElsewhere as elsewhere:
            return await self.remote(sid, elsewhere.owner)

    async def local(self, sid: str) -> LocalHandle:
        s = await self.manager.get(sid)
        self._adopt(s)
        return LocalHandle(s, self.manager, self.turns)

    def _adopt(self, s: Session) -> None:
        """Clients that followed this session through the relay now follow it here, from where they were."""
        epoch, subs = self.relay.take_subscribers(s.sid)
        for sub, last in subs.items():
            r: Resume[bytes] = s.log.resume(epoch or "", last)
            if not r.recovered:
                sub.close(1012, "the session moved to this node and its frames did not: resume")
                continue
            for data in r.items:
                sub.push(data)
            self.manager.attach(s, sub)

    async def remote(self, sid: str, owner: str) -> SessionHandle:
        await self.relay.watch(sid)
        found = await self.store.view(sid)
        if found is None:
            self.relay.forget(sid)
            raise ClientError(UNKNOWN, code="unknown_session")
        loaded, owner, _ = found
        assert loaded.log is not None
        view = Session.loaded(loaded, self.manager.config.frame_log, gen=0, now=self.manager.clock())
        self.relay.known(sid, view.log.epoch, view.log.last_seq)
        return RemoteHandle(self, view, owner)

    async def serve(self, sid: str, op: str, args: dict[str, Any]) -> Any:
        """The owner's side of a forwarded request."""
        try:
            h = await self.local(sid)
        except OwnedElsewhere:
            raise OwnerGone(sid) from None
        return await self.carry_out(h, op, args)

    @staticmethod
    async def carry_out(h: LocalHandle, op: str, args: dict[str, Any]) -> Any:
        if op == "join":  # a client attached on another node: presence
            return h.session.join(args["who"])
        if op == "leave":
            return h.session.leave(args["who_id"])
        if op == "turn":
            if args.get("asker"):  # who asked, on its node: its limits, audit and trace go with the turn
                CLIENT.set(as_client(args["asker"]))
            await h.turn(args["kind"], args["user"], args["params"], args["id"],
                         schema=args.get("schema"), grammar=args.get("grammar"))  # fmt: skip
        elif op == "cancel":
            await h.cancel(if_running=bool(args.get("if_running")))
        elif op == "rollback":
            await h.rollback(int(args["tid"]))
        elif op == "update":
            await h.update(args.get("persona"), args.get("params") or {}, args.get("story"))
        elif op == "edit":
            await h.edit(int(args["tid"]), args.get("user"), args.get("reply"))
        elif op == "close":
            await h.close()
        else:
            raise ClientError(f"unknown forwarded request {op!r}", code="internal")


class RemoteHandle:
    """A session another node owns. ``view`` is its state as read from Redis, for the replies to open, attach and
    resume; live frames come through the relay. If the owner goes (a clean hand-over, or its lease expired), the
    next request finds the session's new place, or takes the session itself."""

    def __init__(self, fleet: FleetSessions, view: Session, owner: str) -> None:
        self.fleet, self.view, self.owner = fleet, view, owner
        self.local: LocalHandle | None = None
        self.subs: set[Subscriber] = set()
        self.start_at = 0  # a resume that was ahead of the stream: the seq its client already has

    @property
    def sid(self) -> str:
        return self.view.sid

    @property
    def user(self) -> str:
        return self.view.data.user

    @property
    def alive(self) -> bool:
        return self.local.alive if self.local is not None else self.sid in self.fleet.relay.watches

    def frame(self, frame_id: Any = None, *, snapshot: bool = False) -> F.Frame:
        return self.view.session_frame(frame_id=frame_id, snapshot=snapshot)

    async def resume(self, epoch: str, last_seq: int, frame_id: Any) -> tuple[F.Frame, list[bytes]]:
        log_ = self.view.log
        if epoch == log_.epoch and last_seq > log_.last_seq:
            # The owner sends its own clients each frame before the frame reaches Redis: a client that saw it
            # there and resumes here is a moment ahead of the stream. The relay brings those frames; wait for
            # them (bounded), then the resume recovers with nothing to replay.
            if await self.fleet.relay.caught_up(self.sid, last_seq, AHEAD_WAIT_S):
                self.start_at = last_seq
                frame = self.view.session_frame(frame_id=frame_id, recovered=True)
                frame["seq"] = last_seq
                return frame, []
        r: Resume[bytes] = log_.resume(epoch, last_seq)
        if r.recovered:
            return self.view.session_frame(frame_id=frame_id, recovered=True), r.items
        return self.view.session_frame(frame_id=frame_id, recovered=False, why=r.why, snapshot=True), []

    def attach(self, sub: Subscriber) -> None:
        if self.local is not None:
            self.local.attach(sub)
            return
        self.subs.add(sub)
        self.fleet.relay.attach(self.sid, sub, max(self.view.log.last_seq, self.start_at))
        self._background(self._join(sub))

    def detach(self, sub: Subscriber) -> None:
        if self.local is not None:
            self.local.detach(sub)
            return
        self.subs.discard(sub)
        self.fleet.relay.detach(self.sid, sub)
        self._background(self.fleet.rpc.call(self.owner, self.sid, "leave", {"who_id": sub.who["id"]}))

    async def _join(self, sub: Subscriber) -> None:
        present = await self.fleet.rpc.call(self.owner, self.sid, "join", {"who": sub.who})
        if sub.presence and isinstance(present, list):
            sub.push(encode_msgpack({"t": "presence", "sid": self.sid, "present": present}))

    def _background(self, job: Coroutine[Any, Any, Any]) -> None:
        """Presence on the owner, told without holding the client up; a failure costs the presence entry only."""

        async def run() -> None:
            try:
                await job
            except Exception as exc:  # noqa: BLE001
                log.info("presence_not_told", sid=self.sid, error=str(exc))

        asyncio.get_running_loop().create_task(run())

    async def _call(self, op: str, **args: Any) -> Any:
        for _ in range(3):
            if self.local is not None:
                return await self.fleet.carry_out(self.local, op, args)
            try:
                return await self.fleet.rpc.call(self.owner, self.sid, op, args)
            except OwnerGone:
                log.info("session_owner_gone", sid=self.sid, owner=self.owner)
            try:  # take it here, or learn its new owner
                self.local = await self.fleet.local(self.sid)
            except OwnedElsewhere as elsewhere:
                self.owner = elsewhere.owner
        raise Busy("the session is moving between nodes; retry shortly", retry_after=1.0)

    async def turn(self, kind: str, user: str | None, params: dict[str, Any], frame_id: Any, **rule: Any) -> None:
        await self._call("turn", kind=kind, user=user, params=params, id=frame_id, asker=asker(), **rule)

    async def cancel(self, *, if_running: bool = False) -> None:
        await self._call("cancel", if_running=if_running)

    async def rollback(self, tid: int) -> None:
        await self._call("rollback", tid=tid)

    async def update(self, persona: str | None, params: dict[str, Any], story: dict[str, Any] | None = None) -> None:
        await self._call("update", persona=persona, params=params, story=story)

    async def edit(self, tid: int, user: str | None, reply: str | None) -> None:
        await self._call("edit", tid=tid, user=user, reply=reply)

    async def close(self) -> None:
        await self._call("close")
