"""Connection filter: a draining node takes no new connections (503), so a load balancer sends them elsewhere,
and on the connections it has, no new sessions or turns (``shutting_down``: reconnect and resume); cancels,
resumes and the rest still work while running turns finish."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rtprotocol import ProtocolError

from .base import Client, NoConnection, Refusal

REFUSED = frozenset({"say", "regenerate", "continue", "session.open"})


class DrainingFilter(NoConnection):
    def __init__(self, draining: Callable[[], bool]) -> None:
        self.draining = draining

    def handshake(self, path: str, headers: dict[str, str], client: Client) -> Refusal | None:
        if self.draining():
            return Refusal(503, "draining: reconnect to another node\n")
        return None

    def frame(self, frame: dict[str, Any], client: Client) -> None:
        if frame["t"] in REFUSED and self.draining():
            raise ProtocolError(
                "shutting_down", "the server is restarting; reconnect and resume", frame_id=frame.get("id")
            )
