"""Connection filter: browsers send ``Origin``; a page whose origin is not on the allow-list is refused at the
handshake (403), so a malicious site cannot open a socket in a victim's name (cross-site WebSocket hijacking).
A request without ``Origin`` is not a browser's and passes. An empty list allows every origin."""

from __future__ import annotations

from .base import Client, NoConnection, Refusal, Report


class OriginFilter(NoConnection):
    def __init__(self, allowed: frozenset[str], report: Report) -> None:
        self.allowed = allowed
        self.report = report

    def handshake(self, path: str, headers: dict[str, str], client: Client) -> Refusal | None:
        origin = headers.get("origin")
        if origin is None or not self.allowed or origin.rstrip("/").lower() in self.allowed:
            return None
        self.report("origin_refused", client, origin[:200])
        return Refusal(403, f"origin {origin[:100]} is not allowed on this server (settings: allowed_origins)\n")


def parse_origins(spec: str) -> frozenset[str]:
    return frozenset(o.strip().rstrip("/").lower() for o in spec.split(",") if o.strip())
