"""Protection over real sockets against ``rtserver serve``: the audit log loses nothing across SIGTERM and its
verifier finds tampering; a public bind creates a key and refuses strangers; a user token over the wire."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from rtclient import Client, RtClientError

from ..conftest import SCRIPTED


def audit(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtserver", "audit", *args, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_2000_turns_then_sigterm_leave_exactly_2000_turn_records(start_server, tmp_path: Path):
    data = tmp_path / "data"
    srv = start_server(*SCRIPTED, "--scripted-rate", "0", "--scripted-words", "2", data_dir=data)

    async def talk(c: Client, n: int) -> None:
        s = await c.open_session()
        for i in range(n):
            assert (await (await s.say(f"line {i}")).result()).reason == "stop"

    async with Client(srv.url) as c:
        await asyncio.gather(*[talk(c, 100) for _ in range(20)])
    assert srv.signal(signal.SIGTERM) == 0
    turns = [r for r in map(orjson.loads, audit(data, "export").stdout.splitlines()) if r["h"]["kind"] == "turn"]
    assert len(turns) == 2000 and len({(r["h"]["sid"], r["h"]["tid"]) for r in turns}) == 2000
    assert turns[0]["b"]["text"].startswith("sha256:")  # the default policy keeps no plaintext
    ok = audit(data, "verify")
    assert ok.returncode == 0 and "2000 records, INTACT" in ok.stdout, ok.stdout
    path = sorted((data / "audit").glob("*.jsonl"))[0]
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:100] + lines[101:]))  # one record removed
    bad = audit(data, "verify")
    assert bad.returncode == 1 and "removed or inserted" in bad.stdout


async def test_a_public_bind_creates_a_key_logs_it_once_and_refuses_strangers(start_server, tmp_path: Path):
    data = tmp_path / "data"
    srv = start_server(*SCRIPTED, "--host", "0.0.0.0", data_dir=data)
    created = [e for e in srv.log if e.get("event") == "api_key_created"]
    assert len(created) == 1
    key = str(created[0]["key"])
    url = srv.url.replace("0.0.0.0", "127.0.0.1")
    with pytest.raises(RtClientError) as info:
        async with Client(url, reconnect=False):
            pass
    assert info.value.code == "unauthenticated"
    async with Client(url, token=key) as c:
        await c.open_session()
    srv.stop()
    again = start_server(*SCRIPTED, "--host", "0.0.0.0", data_dir=data)
    assert not [e for e in again.log if e.get("event") == "api_key_created"]  # logged once, ever


async def test_a_user_token_minted_by_the_cli_is_accepted(start_server, tmp_path: Path, capsys):
    from rtserver.cli import main

    srv = start_server(*SCRIPTED, env={"RTSERVER_TOKEN_SECRET": "s3cret"})
    with pytest.raises(SystemExit) as exited:
        main(["token", "mint", "--user", "ann", "--ttl", "600", "--secret", "s3cret"])
    assert exited.value.code == 0
    token = capsys.readouterr().out.strip()
    async with Client(srv.url, token=token) as c:
        s = await c.open_session()
        assert (await (await s.say("hi")).result()).reason == "stop"
    with pytest.raises(RtClientError) as info:
        async with Client(srv.url, token=token[:-3] + "abc"):
            pass
    assert info.value.code == "unauthenticated"


@pytest.mark.model
async def test_a_players_turn_on_the_real_model_is_limited_audited_and_traced_to_its_user(
    start_server, bundled_model, tmp_path: Path
):
    """Smoke test with the bundled model: a token user's turn, its tokens charged and given back, one audit record."""
    from rtserver.auth.tokens import mint

    data = tmp_path / "data"
    srv = start_server(
        "--slots", "2", data_dir=data, env={"RTSERVER_TOKEN_SECRET": "s", "RTSERVER_TOKENS_PER_MIN": "64"}
    )
    token = mint("s", "ann", 600, now=__import__("time").time())
    async with Client(srv.url, token=token) as c:
        s = await c.open_session(persona="You are Bram, a blacksmith.")
        r = await (await s.say("Hello!", params={"max_tokens": 40})).result()
        assert r.reason in ("stop", "length") and r.usage["completion"] <= 40
        # 40 reserved, the unused part given back: 64 - used is left, so 40 more fits only if used <= 24
        second = s.say("And?", params={"max_tokens": 64 - r.usage["completion"]})
        assert (await (await second).result()).reason in ("stop", "length")
    assert srv.signal(signal.SIGTERM) == 0
    turns = [r for r in map(orjson.loads, audit(data, "export").stdout.splitlines()) if r["h"]["kind"] == "turn"]
    assert [t["h"]["user"] for t in turns] == ["ann", "ann"]
