"""The command lines around card sessions over real sockets: ``rtclient chat --card`` with a PNG card and a
recording, and ``rtserver card FILE``."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from rtprotocol.cardfile import card_png
from rtprotocol.recording import load

CARD = Path(__file__).parent.parent / "data" / "mira.card.json"


async def run(*argv: str, stdin: bytes = b"") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_rtclient_chat_plays_a_png_card_and_records_it(scripted_server, tmp_path):
    png, rec = tmp_path / "mira.png", tmp_path / "chat.jsonl"
    png.write_bytes(card_png(json.loads(CARD.read_text())))
    code, out, err = await run(
        "-m", "rtclient.cli", "chat", scripted_server.url, "--card", str(png), "--user", "Ada", "--record", str(rec),
        stdin=b"Is the lamp lit?\n/impersonate\n/quit\n",
    )  # fmt: skip
    assert code == 0, err
    assert "*Mira opens the door.* In with you, Ada, before the sea takes you." in out
    assert out.count("[stop;") == 2 and "You said: Is the lamp lit?." in out
    kinds = [e.frame.get("kind") for e in load(rec).entries if e.frame["t"] == "turn.start"]
    assert kinds == ["say", "impersonate"]


async def test_rtserver_card_prints_a_png_cards_json(tmp_path):
    png = tmp_path / "mira.png"
    png.write_bytes(card_png(json.loads(CARD.read_text())))
    code, out, err = await run("-m", "rtserver", "card", str(png))
    assert code == 0 and json.loads(out) == json.loads(CARD.read_text())
    assert "Mira 1.2" in err and "7 book entries" in err
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    code, _, err = await run("-m", "rtserver", "card", str(tmp_path / "bad.png"))
    assert code == 2 and "no chara" in err
