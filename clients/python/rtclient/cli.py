"""``rtclient chat URL``: a small terminal chat for trying a server by hand.

Commands: /cancel (while a reply streams: stop it), /regen (another alternative), /continue (extend the
reply), /impersonate (a suggestion for your next line), /quit. ``--card FILE`` plays a character card (JSON or
PNG) and ``--record FILE`` records the session for ``rtserver replay run``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from .client import Client, RtClientError, Turn


async def _stream(turn: Turn) -> None:
    async for text in turn:
        print(text, end="", flush=True)
    r = await turn.result()
    t = r.timings
    print(f"\n  [{r.reason}; first token {t.get('ttft_ms')} ms, {r.usage.get('completion', 0)} tokens]", flush=True)


async def chat(
    url: str,
    persona: str | None,
    subprotocol: str,
    temperature: float | None,
    card: str | None = None,
    user: str | None = None,
    record: str | None = None,
) -> None:
    params = {"temperature": temperature} if temperature is not None else None
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line.rstrip("\n"))
        loop.call_soon_threadsafe(lines.put_nowait, None)

    async with Client(url, subprotocol=subprotocol, name="rtclient-chat", record=record) as client:
        story = {"card": card, "user": user} if card else {}
        session = await client.open_session(persona=persona, params=params, **story)
        for turn in (session.snapshot or {}).get("turns", []):  # a card's greeting
            print(turn["reply"])
        print(f"connected to {client.welcome.get('server')} ({client.welcome.get('node')}), session {session.sid}")
        print("type a line; /cancel (while a reply streams) /regen /continue /quit")
        loop.run_in_executor(None, read_stdin)
        ahead: list[str | None] = []
        while (line := ahead.pop(0) if ahead else await lines.get()) is not None and line != "/quit":
            try:
                if line == "/regen":
                    turn = await session.regenerate()
                elif line == "/continue":
                    turn = await session.continue_()
                elif line == "/impersonate":
                    turn = await session.impersonate()
                elif line and not line.startswith("/"):
                    turn = await session.say(line)
                else:
                    continue
            except RtClientError as exc:
                print(f"  [error {exc.code}: {exc.message}]")
                continue
            streaming = asyncio.ensure_future(_stream(turn))
            while not streaming.done():
                next_line = asyncio.ensure_future(lines.get())
                await asyncio.wait({streaming, next_line}, return_when=asyncio.FIRST_COMPLETED)
                if next_line.done():
                    typed = next_line.result()
                    if typed == "/cancel":
                        with contextlib.suppress(RtClientError):
                            await session.cancel()
                    else:
                        ahead.append(typed)  # typed ahead: taken once this reply ends
                else:
                    next_line.cancel()
            await streaming


def main() -> None:
    p = argparse.ArgumentParser(prog="rtclient", description="rtserver reference client")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser(
        "chat",
        help="chat with a server in the terminal",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("url", help="ws://host:port/")
    c.add_argument("--persona", help="system prompt / character")
    c.add_argument("--json", action="store_true", help="use the rt.v1.json subprotocol")
    c.add_argument("--temperature", type=float)
    c.add_argument("--card", metavar="FILE", help="a character card: JSON, or a PNG card (chara / ccv3 chunk)")
    c.add_argument("--user", help="your name in the story ({{user}})")
    c.add_argument("--record", metavar="FILE", help="record every frame for rtserver replay run")
    a = p.parse_args()
    sub_name = "rt.v1.json" if a.json else "rt.v1.msgpack"
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(chat(a.url, a.persona, sub_name, a.temperature, a.card, a.user, a.record))


if __name__ == "__main__":
    main()
