"""Who a connection is, once its credential has been checked (``rtserver.auth``)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ClientError


@dataclass(frozen=True)
class Principal:
    """Who a connection is, once its credential has been checked. ``user`` "" means anonymous (auth off)."""

    user: str = ""
    kind: str = "anon"  # anon | key | token
    key_id: str = ""
    expires: float = 0.0  # wall-clock seconds; 0 = never (keys)
    models: frozenset[str] | None = None  # None: any
    personas: frozenset[str] | None = None
    ro: frozenset[str] = frozenset()  # sessions of other users this principal may watch read-only
    limits: tuple[tuple[str, float], ...] = ()  # per-user limit overrides from the token (frames_per_min, ...)

    def limit(self, name: str, default: float) -> float:
        return next((v for k, v in self.limits if k == name), default)

    @property
    def player(self) -> str:
        """The user whose sessions are counted against the per-user caps: players (user tokens) only; API keys
        belong to trusted backends that serve many players."""
        return self.user if self.kind == "token" else ""

    def stored_sessions(self, default: int) -> int:
        """How many stored sessions this player may keep (0: not counted)."""
        return int(self.limit("stored_sessions", default)) if self.player else 0

    def attaches_read_only(self, owner: str, sid: str, asked: bool) -> bool:
        """A session is its user's: another user may only watch it, read-only, with a grant for it. A backend's
        API key may act on any session. Raises ``forbidden`` when neither holds."""
        if not owner or owner == self.user or self.kind == "key":
            return asked
        if sid in self.ro:  # a spectator grant: watching only, whatever the frame asked for
            return True
        raise ClientError("this session belongs to another user", code="forbidden")


ANONYMOUS = Principal()
