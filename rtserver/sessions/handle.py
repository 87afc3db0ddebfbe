"""``SessionHandle``: the one way transport code touches a session.

A handle for a session in this node's memory calls straight into it; a handle for a session owned by another
node (the cross-node work) relays the same calls. The transport never reaches into a session's log, turn or
history: it asks the handle for frames and results.
"""

from __future__ import annotations

from typing import Any, Protocol

from rtprotocol import Resume
from rtprotocol import frames as F

from ..errors import ClientError
from ..story.registry import CardRegistry
from . import storyline
from .manager import SessionManager
from .session import Session, Subscriber
from .turns import Turns


class SessionHandle(Protocol):
    @property
    def sid(self) -> str: ...
    @property
    def alive(self) -> bool: ...
    @property
    def user(self) -> str: ...
    def frame(self, frame_id: Any = None, *, snapshot: bool = False) -> F.Frame: ...
    async def resume(self, epoch: str, last_seq: int, frame_id: Any) -> tuple[F.Frame, list[bytes]]: ...
    def attach(self, sub: Subscriber) -> None: ...
    def detach(self, sub: Subscriber) -> None: ...
    async def turn(self, kind: str, user: str | None, params: dict[str, Any], frame_id: Any, **rule: Any) -> None: ...
    async def cancel(self, *, if_running: bool = False) -> None: ...
    async def rollback(self, tid: int) -> None: ...
    async def update(self, persona: str | None, params: dict[str, Any], story: dict[str, Any] | None = ...) -> None: ...
    async def edit(self, tid: int, user: str | None, reply: str | None) -> None: ...
    async def close(self) -> None: ...


class LocalHandle:
    def __init__(self, session: Session, manager: SessionManager, turns: Turns) -> None:
        self._s, self._m, self._turns = session, manager, turns

    @property
    def sid(self) -> str:
        return self._s.sid

    @property
    def session(self) -> Session:
        return self._s

    @property
    def user(self) -> str:
        """The user the session belongs to ("" : created without auth)."""
        return self._s.data.user

    @property
    def alive(self) -> bool:
        """Still the node's copy of the session (not closed, not paged out since)."""
        return self._m.sessions.get(self._s.sid) is self._s

    def frame(self, frame_id: Any = None, *, snapshot: bool = False) -> F.Frame:
        return self._s.session_frame(frame_id=frame_id, snapshot=snapshot)

    async def resume(self, epoch: str, last_seq: int, frame_id: Any) -> tuple[F.Frame, list[bytes]]:
        """All or nothing: the frames after ``last_seq`` if the log still holds them all, else a snapshot."""
        r: Resume[bytes] = self._s.log.resume(epoch, last_seq)
        if r.recovered:
            return self._s.session_frame(frame_id=frame_id, recovered=True), r.items
        return self._s.session_frame(frame_id=frame_id, recovered=False, why=r.why, snapshot=True), []

    def attach(self, sub: Subscriber) -> None:
        self._m.attach(self._s, sub)

    def detach(self, sub: Subscriber) -> None:
        self._m.detach(self._s, sub)

    async def turn(self, kind: str, user: str | None, params: dict[str, Any], frame_id: Any, **rule: Any) -> None:
        await self._turns.start(self._s, kind, user, params, frame_id, rule.get("schema"), rule.get("grammar"))

    async def cancel(self, *, if_running: bool = False) -> None:
        if if_running and not self._s.running:
            return
        await self._turns.cancel(self._s)

    async def rollback(self, tid: int) -> None:
        await self._m.rollback(self._s, tid)

    async def update(self, persona: str | None, params: dict[str, Any], story: dict[str, Any] | None = None) -> None:
        if story:
            await storyline.update_story(self._m, self._s, story)
            if persona is None and not params:
                self._m.updated(self._s)
                return
        await self._m.update(self._s, persona, params)

    async def edit(self, tid: int, user: str | None, reply: str | None) -> None:
        await storyline.edit(self._m, self._s, tid, user, reply)
        self._m.updated(self._s)

    async def close(self) -> None:
        await self.cancel(if_running=True)
        await self._m.close(self._s)


class Sessions:
    """Hands out handles: the transport's entry to the session layer."""

    def __init__(self, manager: SessionManager, turns: Turns, cards: CardRegistry | None = None) -> None:
        self.manager, self.turns = manager, turns
        self.cards = cards or CardRegistry(None)  # (in memory: a server gives one under its data_dir)

    async def put_card(self, card: dict[str, Any]) -> dict[str, Any]:
        return await self.cards.put(card)

    async def open(
        self,
        persona: str | None,
        params: dict[str, Any],
        model: str | None,
        card: dict[str, Any] | None = None,
        story: dict[str, Any] | None = None,
        user: str = "",
        quota: int = 0,
    ) -> SessionHandle:
        """A new session; with ``card`` a card session, whose greetings are its first turns; ``user``: whose;
        ``quota``: the stored sessions that user may keep (0: any number)."""
        if card is None:
            if story:
                raise ClientError("session.open: user, vars, note and note_depth need a card")
            s = await self.manager.create(persona, params, model, user=user, quota=quota)
            return LocalHandle(s, self.manager, self.turns)
        if set(card) == {"cid"} and isinstance(card["cid"], str):  # a card registered by card.put
            card = await self.cards.get(card["cid"])
        state = storyline.new_story(card, story or {}, self.manager.config.max_text).to_dict()
        s = await self.manager.create(persona, params, model, state, user=user, quota=quota)
        await storyline.open_story(self.manager, s)
        return LocalHandle(s, self.manager, self.turns)

    async def get(self, sid: str) -> SessionHandle:
        return LocalHandle(await self.manager.get(sid), self.manager, self.turns)
