"""Playing one copy of a recording's client side against a server: each connection in turn, each client frame
sent once the server frames that had come before it in the recording have come again (by kind, deltas aside),
at the recorded pace (``speed`` 1) or at once (``speed`` 0: as fast as the server answers). Session ids are mapped
from the recording's to the new server's; a ``session.resume`` (a reconnect in the recording) becomes an
attach; a connection recorded from its attach on (a server-side recording of a chosen session) sends ``hello``
first.
What the player sent and received is kept as recording entries, compared and written out like a recording."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import websockets
from rtprotocol import SUBPROTOCOLS, Codec
from rtprotocol.recording import Entry, Recording
from websockets.exceptions import ConnectionClosed

from .turns import KEY_FRAMES

STALL_S = 60.0  # a server that sends none of the frames the recording expects for this long has stalled


class Stalled(Exception):
    """The server did not send what the recording says came next (a different reply to a frame, or none)."""


class Player:
    def __init__(
        self,
        url: str,
        recording: Recording,
        *,
        speed: float = 1.0,
        on_turn_end: Callable[[], None] = lambda: None,
        stall_s: float = STALL_S,
    ) -> None:
        self.url, self.recording, self.speed = url, recording, speed
        sub = recording.header.get("sub")
        self.sub = sub if sub in SUBPROTOCOLS else SUBPROTOCOLS[0]  # (any: a recording holds frames as maps)
        self.codec = Codec(self.sub)
        self.on_turn_end, self.stall_s = on_turn_end, stall_s
        self.sids: dict[str, str] = {}  # the recording's session id -> this server's
        self.entries: list[Entry] = []
        self.t0 = time.monotonic()
        # The recording's session id of each reply to a session.open, by frame id and connection.
        self._recorded_sid = {
            (e.conn, e.frame.get("id")): e.frame["sid"]
            for e in recording.entries
            if not e.sent and e.frame.get("t") == "session" and e.frame.get("id") is not None
        }

    def _ms(self) -> float:
        return round((time.monotonic() - self.t0) * 1000, 3)

    async def play(self) -> list[Entry]:
        for conn, entries in sorted(self.recording.connections().items()):
            await self._connection(conn, entries)
        return self.entries

    async def _connection(self, conn: int, entries: Sequence[Entry]) -> None:
        ws = await websockets.connect(self.url, subprotocols=[self.sub], compression=None, max_size=None)  # type: ignore[list-item]
        seen: Counter[str] = Counter()
        changed = asyncio.Event()
        reader = asyncio.get_running_loop().create_task(self._read(ws, conn, seen, changed))
        expected: Counter[str] = Counter()
        first = entries[0].ms if entries else 0.0
        started = time.monotonic()
        try:
            if not any(e.sent and e.frame.get("t") == "hello" for e in entries):  # recorded from an attach on
                await ws.send(self.codec.encode({"t": "hello", "client": "rtserver-replay"}))
            for e in entries:
                kind = str(e.frame.get("t"))
                if not e.sent:
                    expected[kind] += kind in KEY_FRAMES
                    continue
                await self._until(expected, seen, changed, reader)
                if self.speed > 0:  # pacing at the recorded offsets (never earlier than the server allows)
                    await asyncio.sleep(max(0.0, started + (e.ms - first) / 1000 / self.speed - time.monotonic()))
                frame = self._mapped(e.frame)
                self.entries.append(Entry(conn, True, self._ms(), frame))
                await ws.send(self.codec.encode(frame))
            await self._until(expected, seen, changed, reader)
        finally:
            reader.cancel()
            await ws.close()

    async def _until(
        self, expected: Counter[str], seen: Counter[str], changed: asyncio.Event, reader: asyncio.Task[None]
    ) -> None:
        while any(seen[k] < n for k, n in expected.items()):
            if reader.done():
                raise Stalled("the server closed the connection before sending what the recording expects")
            changed.clear()
            try:
                async with asyncio.timeout(self.stall_s):
                    await changed.wait()
            except TimeoutError:
                missing = {k: n - seen[k] for k, n in expected.items() if seen[k] < n}
                raise Stalled(f"no {missing} from the server within {self.stall_s:g} s") from None

    async def _read(self, ws: Any, conn: int, seen: Counter[str], changed: asyncio.Event) -> None:
        try:
            async for message in ws:
                f = self.codec.decode(message)
                self.entries.append(Entry(conn, False, self._ms(), f))
                kind = f.get("t")
                if kind == "session" and (rec := self._recorded_sid.get((conn, f.get("id")))) is not None:
                    self.sids[rec] = f["sid"]
                if kind == "turn.end":
                    self.on_turn_end()
                if kind in KEY_FRAMES:
                    seen[kind] += 1
                    changed.set()
        except ConnectionClosed:
            changed.set()

    def _mapped(self, frame: dict[str, Any]) -> dict[str, Any]:
        out = dict(frame)
        if isinstance(out.get("sid"), str):
            out["sid"] = self.sids.get(out["sid"], out["sid"])
        if out.get("t") == "session.resume":  # a reconnect in the recording: attach to the session here
            out = {"t": "session.open", "id": out.get("id"), "sid": out["sid"]}
        return out
