"""The demo page (``rtserver serve --demo``): the static files beside this module, served at ``/`` on the server's
port. A plain GET of ``/`` gets the page; a WebSocket upgrade of ``/`` is still the protocol endpoint. The files are
read once at start-up; ``rtclient.js`` is a copy of clients/js/dist/rtclient.js (``npm run build`` writes both)."""

from __future__ import annotations

from pathlib import Path

from websockets.datastructures import Headers
from websockets.http11 import Response

DEMO_DIR = Path(__file__).parent
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}


class DemoPage:
    def __init__(self, root: Path = DEMO_DIR) -> None:
        self.files = {f"/{p.name}": (p.read_bytes(), TYPES[p.suffix]) for p in root.iterdir() if p.suffix in TYPES}
        self.files["/"] = self.files["/index.html"]

    def response(self, path: str, headers: dict[str, str]) -> Response | None:
        """The file at ``path``, or None: not a demo file, or the WebSocket handshake at ``/``."""
        if path not in self.files or "upgrade" in headers.get("connection", "").lower():
            return None
        body, kind = self.files[path]
        fields = [("Content-Type", kind), ("Content-Length", str(len(body))), ("Cache-Control", "no-cache")]
        return Response(
            200, "OK", Headers([*fields, ("X-Content-Type-Options", "nosniff"), ("Connection", "close")]), body
        )
