"""Connection filter: a draining node takes no new connections (503), so a load balancer sends them elsewhere."""

from __future__ import annotations

from collections.abc import Callable

from .base import Refusal


class DrainingFilter:
    def __init__(self, draining: Callable[[], bool]) -> None:
        self.draining = draining

    def handshake(self, path: str, headers: dict[str, str]) -> Refusal | None:
        if self.draining():
            return Refusal(503, "draining: reconnect to another node\n")
        return None
