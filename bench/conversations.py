"""Load generator for the side-by-side benchmark (bench/compare.py): N sessions, each holding a multi-turn
conversation with think time, against rtserver (its WebSocket protocol; the history lives in the server) or an
OpenAI-compatible server (llama.cpp's llama-server, llama-cpp-python's server: streamed chat completions over
HTTP/1.1 keep-alive, one connection per session, the client resending the whole history each turn as those
servers require). Every target gets the same conversations: the same lines, think times and start offsets,
from one seed.

Reports as JSON: time to first delta per turn index and overall, inter-delta gap, time to the reply's last delta,
output tokens/s (all sessions together from the first line sent to the last delta, and per stream), turns done,
errors.

    python -m bench.conversations --target rtserver --url ws://127.0.0.1:8000/ --sessions 16
    python -m bench.conversations --target openai --url http://127.0.0.1:8080 --sessions 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import websockets
from rtprotocol import Codec
from websockets.typing import Subprotocol

from .common import summary
from .load import LINES


@dataclass
class Script:
    """One session's conversation: when it starts, its lines, and the think time before each next line."""

    start: float
    lines: list[str]
    think: list[float]


def scripts(sessions: int, turns: int, think: float, seed: int, steady: bool = False) -> list[Script]:
    """Each session's lines and think times: exponential around ``think`` (players reading and typing), or all
    equal to it (``steady``: NPC scripts, players at an even pace)."""
    rng = random.Random(seed)
    out = []
    for _ in range(sessions):
        r = random.Random(rng.random())
        out.append(
            Script(
                start=r.uniform(0, think),  # spread the first lines over one think time
                lines=[r.choice(LINES) for _ in range(turns)],
                think=[think if steady or not think else r.expovariate(1 / think) for _ in range(turns)],
            )
        )
    return out


@dataclass
class Stats:
    ttft_by_turn: dict[int, list[float]] = field(default_factory=dict)
    gap: list[float] = field(default_factory=list)
    turn: list[float] = field(default_factory=list)  # from the line sent to the reply's last delta
    first_sent: float = float("inf")  # the first line of the run went out
    last_delta: float = 0.0  # the run's last delta came in
    stream_rate: list[float] = field(default_factory=list)  # tokens/s of one reply, after its first delta
    tokens: int = 0
    turns_done: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    first_session: list[str] = field(default_factory=list)  # the first session's replies: do servers agree?
    replies: dict[int, list[str]] = field(default_factory=dict)  # every session's replies (--replies)

    def error(self, key: str) -> None:
        self.errors[key] = self.errors.get(key, 0) + 1


class Piece:
    """A delta as it arrived: its text and, when the server says so, the turn's final token count."""

    __slots__ = ("text", "tokens")

    def __init__(self, text: str, tokens: int | None = None) -> None:
        self.text, self.tokens = text, tokens


class RtTarget:
    """rtserver: one WebSocket per session; the server keeps the history."""

    def __init__(self, url: str, a: argparse.Namespace) -> None:
        self.url, self.a, self.codec = url, a, Codec("rt.v1.msgpack")

    async def open(self) -> None:
        self.ws = await websockets.connect(
            self.url,
            subprotocols=[Subprotocol(self.codec.subprotocol)],
            compression=None,
            max_size=None,
            open_timeout=60,
            ping_interval=None,
        )
        await self.ws.send(self.codec.encode({"t": "hello", "client": "bench.conversations"}))
        await self.ws.recv()
        params = {"temperature": self.a.temperature, "max_tokens": self.a.max_tokens, "seed": 1}
        await self.ws.send(self.codec.encode({"t": "session.open", "persona": self.a.persona, "params": params}))
        while self.codec.decode(await self.ws.recv())["t"] != "session":
            pass

    async def turn(self, line: str) -> AsyncIterator[Piece]:
        await self.ws.send(self.codec.encode({"t": "say", "text": line}))
        while True:
            f = self.codec.decode(await self.ws.recv())
            if f["t"] == "delta":
                yield Piece(f["x"])
            elif f["t"] == "turn.end":
                if f["reason"] not in ("stop", "length"):
                    raise RuntimeError(f"turn ended {f['reason']}")
                # Count sampled tokens as the OpenAI-style servers do: the end-of-turn token included.
                yield Piece("", int(f["usage"]["completion"]) + (f["reason"] == "stop"))
                return
            elif f["t"] == "error":
                raise RuntimeError(f"error {f['code']}")

    async def close(self) -> None:
        await self.ws.close()


class OpenAITarget:
    """An OpenAI-style server: POST /v1/chat/completions with ``stream: true`` over one keep-alive HTTP/1.1
    connection per session (a minimal client: no dependency beyond asyncio), the history resent every turn."""

    def __init__(self, url: str, a: argparse.Namespace) -> None:
        u = urlsplit(url)
        self.host, self.port, self.a = u.hostname or "127.0.0.1", u.port or 80, a
        self.messages: list[dict[str, str]] = [{"role": "system", "content": a.persona}]
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def turn(self, line: str) -> AsyncIterator[Piece]:
        self.messages.append({"role": "user", "content": line})
        body = orjson.dumps(
            {
                "messages": self.messages,
                "stream": True,
                "stream_options": {"include_usage": True},
                "max_tokens": self.a.max_tokens,
                "temperature": self.a.temperature,
                "seed": 1,
                "cache_prompt": True,  # llama-server: reuse the slot's KV for the common prefix (its default)
            }
        )
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        reader, writer, status = await self._send(head + body)
        headers: dict[str, str] = {}
        while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
            k, _, v = h.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        if b" 200 " not in status:
            raise RuntimeError(f"HTTP {status.decode('latin-1').strip()}")
        reply: list[str] = []
        tokens: int | None = None
        buf = b""
        async for data in self._body(reader, writer, headers):
            buf += data.replace(b"\r\n", b"\n")
            *events, buf = buf.split(b"\n\n")
            for event in events:
                for ln in event.split(b"\n"):
                    if not ln.startswith(b"data:"):
                        continue  # comments (": ping"), event names
                    payload = ln[5:].strip()
                    if payload == b"[DONE]":
                        continue
                    chunk = orjson.loads(payload)
                    if chunk.get("usage"):
                        tokens = int(chunk["usage"]["completion_tokens"])
                    for choice in chunk.get("choices") or ():
                        text = (choice.get("delta") or {}).get("content") or ""
                        if text:
                            reply.append(text)
                            yield Piece(text)
        if headers.get("connection", "").lower() == "close":
            writer.close()
        self.messages.append({"role": "assistant", "content": "".join(reply)})
        yield Piece("", tokens)

    async def _send(self, request: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
        """Send the request; return the connection and the status line. A server may close an idle keep-alive
        connection (uvicorn: after 5 s): then reconnect and send again, once."""
        for attempt in range(2):
            if self.reader is None or self.writer is None or self.reader.at_eof() or self.writer.is_closing():
                await self.open()
            assert self.reader is not None and self.writer is not None
            reader, writer = self.reader, self.writer
            writer.write(request)
            status = await reader.readline()
            if status or attempt:
                return reader, writer, status
            writer.close()
        raise AssertionError("unreachable")

    async def _body(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str]
    ) -> AsyncIterator[bytes]:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                yield await reader.readexactly(size)
                await reader.readexactly(2)
        elif "content-length" in headers:
            yield await reader.readexactly(int(headers["content-length"]))
        else:
            while data := await reader.read(65536):
                yield data
            writer.close()

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def session(
    target: RtTarget | OpenAITarget,
    script: Script,
    stats: Stats,
    t0: float,
    deadline: float,
    record: bool,
    replies: list[str] | None = None,
) -> None:
    await asyncio.sleep(max(0.0, t0 + script.start - time.monotonic()))
    try:
        await target.open()
    except Exception as exc:
        stats.error(f"connect: {type(exc).__name__}")
        return
    try:
        for i, line in enumerate(script.lines):
            if time.monotonic() > deadline:
                stats.error("not started: run time cap reached")
                break
            sent = time.monotonic()
            stats.first_sent = min(stats.first_sent, sent)
            first = last = 0.0
            deltas = 0
            reported: int | None = None
            text: list[str] = []
            async for piece in target.turn(line):
                now = time.monotonic()
                if piece.tokens is not None:
                    reported = piece.tokens
                    continue
                deltas += 1
                text.append(piece.text)
                if deltas == 1:
                    first = now
                    stats.ttft_by_turn.setdefault(i, []).append((now - sent) * 1000)
                else:
                    stats.gap.append((now - last) * 1000)
                last = now
            tokens = reported if reported is not None else deltas
            stats.tokens += tokens
            stats.turns_done += 1
            if record:
                stats.first_session.append("".join(text))
            if replies is not None:
                replies.append("".join(text))
            if deltas:
                stats.turn.append((last - sent) * 1000)
                stats.last_delta = max(stats.last_delta, last)
            if deltas > 1 and last > first:
                stats.stream_rate.append((tokens - 1) / (last - first))
            await asyncio.sleep(script.think[i])
    except Exception as exc:
        stats.error(f"{type(exc).__name__}: {str(exc)[:80]}")
    finally:
        await target.close()


async def run(a: argparse.Namespace) -> dict[str, Any]:
    stats = Stats()
    t0 = time.monotonic()
    deadline = t0 + a.cap if a.cap else float("inf")
    cls = RtTarget if a.target == "rtserver" else OpenAITarget
    plans = scripts(a.sessions, a.turns, a.think, a.seed, steady=a.pace == "steady")
    if a.replies:
        stats.replies = {i: [] for i in range(len(plans))}
    await asyncio.gather(
        *(session(cls(a.url, a), s, stats, t0, deadline, i == 0, stats.replies.get(i)) for i, s in enumerate(plans))
    )
    elapsed = time.monotonic() - t0
    every = [x for v in stats.ttft_by_turn.values() for x in v]
    warm = [x for i, v in stats.ttft_by_turn.items() if i > 0 for x in v]
    return {
        "sessions": a.sessions,
        "turns_planned": a.sessions * a.turns,
        "turns_done": stats.turns_done,
        "seconds": round(elapsed, 2),
        "output_tokens": stats.tokens,
        # Between the first line sent and the last delta received: the run's wall time also holds the start
        # offsets and every session's think time after its last turn, which is the same work at random length.
        "output_tok_s": round(stats.tokens / max(stats.last_delta - stats.first_sent, 1e-9), 2),
        "output_tok_s_wall": round(stats.tokens / elapsed, 2),
        "stream_tok_s": summary(stats.stream_rate),
        "ttft_ms": summary(every),
        "ttft_ms_warm": summary(warm),
        "ttft_ms_by_turn": {i: summary(v) for i, v in sorted(stats.ttft_by_turn.items())},
        "gap_ms": summary(stats.gap),
        "turn_ms": summary(stats.turn),
        "errors": stats.errors,
        "first_session_replies": stats.first_session,
        **({"replies": stats.replies} if a.replies else {}),
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", choices=["rtserver", "openai"], required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--sessions", type=int, default=16)
    p.add_argument("--turns", type=int, default=10)
    p.add_argument("--think", type=float, default=2.0, help="mean think time between turns, seconds (exponential)")
    p.add_argument(
        "--pace", choices=["exponential", "steady"], default="exponential", help="steady: every think time is --think"
    )
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--persona", default="You are Bram, a gruff blacksmith in the village of Eastmere.")
    p.add_argument("--persona-file", help="read the persona from this file instead (e.g. bench/personas/bram-card.txt)")
    p.add_argument("--cap", type=float, default=0.0, help="no new turn starts after this many seconds (0: none)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--replies", action="store_true", help="report every session's replies (equivalence checks)")
    return p


def main() -> None:
    a = parser().parse_args()
    if a.persona_file:
        a.persona = Path(a.persona_file).read_text().strip()
    import uvloop

    print(json.dumps(uvloop.run(run(a))))


if __name__ == "__main__":
    main()
