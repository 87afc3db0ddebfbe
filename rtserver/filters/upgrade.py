"""Connection filter: a plain HTTP request to the WebSocket endpoint is told what the endpoint is (426)."""

from __future__ import annotations

from .base import Client, NoConnection, Refusal


class UpgradeFilter(NoConnection):
    def handshake(self, path: str, headers: dict[str, str], client: Client) -> Refusal | None:
        if "upgrade" not in headers.get("connection", "").lower():
            return Refusal(
                426,
                "rtserver: this is a WebSocket endpoint (ws://host:port/, subprotocol rt.v1.msgpack or rt.v1.json); "
                "see /healthz, /readyz, /metrics\n",
            )
        return None
