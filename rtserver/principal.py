"""Who a connection is, once its credential has been checked (``rtserver.auth``)."""

from __future__ import annotations

from dataclasses import dataclass


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


ANONYMOUS = Principal()
