"""``rtserver replay record OUT --url ws://server/``: a recording proxy. Clients (any language) connect to it as
they would to the server; it passes every frame both ways unchanged and writes each, with its time, to ``OUT``
(``rtprotocol.recording``; each client connection is a connection of the recording). ``rtclient``'s
``Client(record=...)`` records from inside a Python client instead, and a server records chosen sessions itself
(``record_dir``, ``record_sessions``)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

import websockets
from rtprotocol import SUBPROTOCOLS, Codec
from rtprotocol.recording import Recorder
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol


class Proxy:
    def __init__(self, upstream: str, recorder: Recorder) -> None:
        self.upstream, self.recorder = upstream, recorder

    async def handle(self, client: ServerConnection) -> None:
        sub = client.subprotocol or SUBPROTOCOLS[0]
        codec, conn = Codec(sub), self.recorder.connection()
        async with websockets.connect(
            self.upstream, subprotocols=[Subprotocol(sub)], compression=None, max_size=None
        ) as server:
            await asyncio.gather(
                self._pump(client, server, codec, conn, sent=True),
                self._pump(server, client, codec, conn, sent=False),
                return_exceptions=True,
            )

    async def _pump(self, src: Any, dst: Any, codec: Codec, conn: int, *, sent: bool) -> None:
        try:
            async for message in src:
                try:
                    self.recorder.log(conn, sent, codec.decode(message))
                except Exception:  # a frame that does not decode is passed on, and the server answers it
                    pass
                await dst.send(message)
        except ConnectionClosed:
            pass
        finally:
            await dst.close()


async def record(
    out: str,
    upstream: str,
    host: str,
    port: int,
    *,
    listening: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Proxy ``host:port`` to ``upstream``, recording to ``out``, until ``stop`` is set (or, without one, SIGINT or
    SIGTERM); ``listening`` is told the port once it listens."""
    recorder = Recorder.to_file(out, url=upstream, sub="")
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    proxy = Proxy(upstream, recorder)
    async with serve(
        proxy.handle, host, port, subprotocols=[Subprotocol(p) for p in SUBPROTOCOLS], compression=None, max_size=None
    ) as server:
        bound = server.sockets[0].getsockname()[1] if server.sockets else port
        print(f"recording ws://{host}:{bound}/ -> {upstream} into {out}; Ctrl-C to stop", flush=True)
        if listening is not None:
            listening(bound)
        await stop.wait()
    recorder.close()
