"""The session-protocol core of one connection, sans-I/O: validated client frames in, actions out.

It decides what each frame asks for (the hello gate, which session a frame means, the per-connection session
cap) without sockets, clocks, stores or engines, so the server, the replay tool
and the tests drive the same rules. The caller carries out each action and reports back what became of it
(``attached``, ``detached``); refusals are raised as ``ProtocolError`` with a stable code.

    core = ConnectionCore(max_sessions=64)
    action = core.receive(validate_client_frame(decoded))   # -> Reply | Hello | Open | Attach | Resume | ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import frames as F
from .errors import ProtocolError

TURN_FRAMES = ("say", "regenerate", "continue", "impersonate")
STORY_KEYS = ("user", "vars", "note", "note_depth")  # session.open/session.update: a card session's story state


@dataclass
class Action:
    frame_id: Any


@dataclass
class Reply(Action):
    """Send ``frame`` to this client; nothing else to do."""

    frame: F.Frame


@dataclass
class Hello(Action):
    """Answer with ``welcome``."""


@dataclass
class Open(Action):
    """Create a session and attach to it."""

    persona: str | None
    params: dict[str, Any]
    model: str | None
    snapshot: bool = False  # the reply carries a (still empty) snapshot only when asked
    card: dict[str, Any] | None = None  # a Character Card V2 map
    story: dict[str, Any] = field(default_factory=dict)  # user, vars, note, note_depth as sent


@dataclass
class PutCard(Action):
    """``card.put``: register a card (too large for ``session.open``) and answer with its ``cid``."""

    card: dict[str, Any]


@dataclass
class Attach(Action):
    """``session.open`` with a ``sid``: attach to an existing session; the reply carries a snapshot.
    ``mode`` "ro": a spectator's read-only attachment (its writes are answered ``read_only``)."""

    sid: str
    mode: str = ""


@dataclass
class Resume(Action):
    sid: str
    epoch: str
    last_seq: int


@dataclass
class SessionAction(Action):
    """A frame about one session. ``attach``: the connection is not attached to it yet, and must be first."""

    sid: str
    attach: bool


@dataclass
class Turn(SessionAction):
    kind: str  # say | regenerate | continue
    text: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    interrupt: bool = False
    schema: dict[str, Any] | None = None
    grammar: str | None = None


@dataclass
class Cancel(SessionAction):
    pass


@dataclass
class Rollback(SessionAction):
    tid: int = 0


@dataclass
class Update(SessionAction):
    persona: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    story: dict[str, Any] = field(default_factory=dict)  # user, vars, note, note_depth, unset as sent


@dataclass
class Edit(SessionAction):
    """An edited sibling of turn ``tid``: its user line and/or reply replaced."""

    tid: int = 0
    user: str | None = None
    reply: str | None = None


@dataclass
class Close(SessionAction):
    pass


@dataclass
class Delete(Close):
    """``session.delete``: close, and erase what the server keeps of it (frame log, audit bodies)."""


class ConnectionCore:
    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self.hello = False
        self.attached: dict[str, None] = {}  # the sessions this connection is attached to, oldest first
        self.default_sid: str | None = None  # the session a frame without `sid` means

    def receive(self, frame: F.Frame) -> Action:
        kind, fid = frame["t"], frame.get("id")
        if kind == "ping":
            return Reply(fid, F.pong(fid, frame.get("ts")))
        if kind == "hello":
            self.hello = True
            return Hello(fid)
        if not self.hello:
            raise ProtocolError("not_ready", "send hello first", frame_id=fid)
        params = frame.get("params") or {}
        if kind == "session.open":
            if frame.get("sid"):
                self._room_for(frame["sid"], fid)
                return Attach(fid, frame["sid"], frame.get("mode") or "")
            self._room_for(None, fid)
            story = {k: frame[k] for k in STORY_KEYS if k in frame}
            snapshot = bool(frame.get("snapshot"))
            return Open(fid, frame.get("persona"), params, frame.get("model"), snapshot, frame.get("card"), story)
        if kind == "card.put":
            return PutCard(fid, frame["card"])
        if kind == "session.resume":
            self._room_for(frame["sid"], fid)
            return Resume(fid, frame["sid"], frame["ep"], frame["last_seq"])
        sid = frame.get("sid") or self.default_sid
        if sid is None:
            raise ProtocolError("no_session", "open or resume a session first, or name it in sid", frame_id=fid)
        attach = sid not in self.attached
        if attach:
            self._room_for(sid, fid)
        if kind in TURN_FRAMES:
            return Turn(
                fid,
                sid,
                attach,
                kind,
                frame.get("text"),
                params,
                bool(frame.get("interrupt")),
                frame.get("schema"),
                frame.get("grammar"),
            )
        if kind == "cancel":
            return Cancel(fid, sid, attach)
        if kind == "rollback":
            return Rollback(fid, sid, attach, frame["tid"])
        if kind == "session.update":
            story = {k: frame[k] for k in (*STORY_KEYS, "unset") if k in frame}
            return Update(fid, sid, attach, frame.get("persona"), params, story)
        if kind == "edit":
            return Edit(fid, sid, attach, frame["tid"], frame.get("user"), frame.get("reply"))
        if kind == "session.delete":
            return Delete(fid, sid, attach)
        assert kind == "session.close", kind
        return Close(fid, sid, attach)

    def _room_for(self, sid: str | None, fid: Any) -> None:
        if sid not in self.attached and len(self.attached) >= self.max_sessions:
            raise ProtocolError(
                "too_many_sessions",
                f"this connection already has {len(self.attached)} sessions open; close one (session.close) or "
                "use another connection",
                frame_id=fid,
            )

    def attached_to(self, sid: str) -> None:
        """The caller attached this connection to ``sid``; frames without a ``sid`` now mean it."""
        self.attached[sid] = None
        self.default_sid = sid

    def detached(self, sid: str) -> None:
        """``sid`` was closed or is gone."""
        self.attached.pop(sid, None)
        if self.default_sid == sid:
            self.default_sid = None
