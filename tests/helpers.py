"""A raw protocol client for tests that need to see every frame, including the ones the reference client hides."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

import websockets
from rtprotocol import SUBPROTOCOL_MSGPACK, Codec
from websockets.asyncio.client import ClientConnection

HANG = 60.0


async def http_get(url: str) -> bytes:
    def get() -> bytes:
        with urllib.request.urlopen(url, timeout=HANG) as r:
            return r.read()  # type: ignore[no-any-return]

    return await asyncio.to_thread(get)


class Raw:
    opened: list[Raw] = []  # closed after each test by the autouse fixture in conftest

    def __init__(self, ws: ClientConnection, codec: Codec) -> None:
        self.ws, self.codec = ws, codec
        Raw.opened.append(self)

    @classmethod
    async def connect(cls, url: str, subprotocol: str = SUBPROTOCOL_MSGPACK, hello: bool = True, **kw: Any) -> Raw:
        ws = await websockets.connect(url, subprotocols=[subprotocol], compression=None, **kw)  # type: ignore[list-item]
        raw = cls(ws, Codec(subprotocol))
        if hello:
            await raw.send({"t": "hello", "client": "tests"})
            assert (await raw.recv())["t"] == "welcome"
        return raw

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(self.codec.encode(frame))

    async def recv(self) -> dict[str, Any]:
        # A bound against hangs, never a synchronisation: a healthy server answers in milliseconds.
        async with asyncio.timeout(HANG):
            return self.codec.decode(await self.ws.recv())  # type: ignore[no-any-return]

    async def until(self, kind: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Frames up to and including the first of type ``kind``."""
        seen = []
        while True:
            f = await self.recv()
            seen.append(f)
            if f["t"] == kind:
                return f, seen

    async def open(self, **fields: Any) -> dict[str, Any]:
        await self.send({"t": "session.open", "id": "open", **fields})
        f, _ = await self.until("session")
        return f

    async def close(self) -> None:
        await self.ws.close()
