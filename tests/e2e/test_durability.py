"""What the journal promises, against a real ``rtserver serve``: damage costs only the damaged records and is
reported, a turn id is never given twice even across kill -9, a full disk ends turns with ``store_failed`` and
marks the node degraded until space returns, and a node with 100,000 stored sessions loads only those named."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
from rtclient import Client

from rtserver.sessions import records as R
from rtserver.sessions.history import TurnNode
from rtserver.sessions.journal import MAGIC
from rtserver.sessions.local import LocalStore
from rtserver.sessions.store import TID_BLOCK, SessionData

from ..conftest import require
from ..helpers import Raw, http_get

SCRIPTED = ("--engine", "scripted", "--scripted-rate", "0")


def journal_check(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtserver", "journal", "check", str(data_dir)], capture_output=True, text=True
    )


def record_starts(raw: bytes) -> list[int]:
    return [m for m in range(len(raw)) if raw[m : m + 4] == MAGIC]


async def snapshot(url: str, sid: str) -> dict:
    r = await Raw.connect(url)
    await r.send({"t": "session.open", "id": 1, "sid": sid})
    f, _ = await r.until("session")
    await r.close()
    return f


async def test_a_turn_id_seen_before_kill_9_is_never_given_again(start_server):
    srv = start_server("--engine", "scripted", "--scripted-rate", "2")
    r = await Raw.connect(srv.url)
    s = await r.open()
    await r.send({"t": "say", "text": "this turn dies with the server"})
    start, _ = await r.until("turn.start")
    srv.signal(signal.SIGKILL)
    srv2 = start_server(*SCRIPTED, data_dir=srv.data_dir)
    r2 = await Raw.connect(srv2.url)
    await r2.send({"t": "say", "sid": s["sid"], "text": "after the crash"})
    again, _ = await r2.until("turn.start")
    assert again["tid"] > start["tid"]


async def test_damage_costs_only_the_damaged_records_and_is_reported(start_server):
    srv = start_server(*SCRIPTED)
    async with Client(srv.url, reconnect=False) as c:
        sessions = [await c.open_session() for _ in range(6)]
        for s in sessions:
            for i in range(3):
                assert (await (await s.say(f"{i}")).result()).reason == "stop"
    assert srv.signal(signal.SIGTERM) == 0
    store = LocalStore(srv.data_dir, "test")
    flipped, truncated, cut = (store.path(s.sid) for s in sessions[:3])
    raw = flipped.read_bytes()
    marks = record_starts(raw)
    flipped.write_bytes(raw[: marks[2] + 20] + bytes([raw[marks[2] + 20] ^ 0x5A]) + raw[marks[2] + 21 :])  # turn 2
    raw = truncated.read_bytes()
    marks = record_starts(raw)
    truncated.write_bytes(raw[: marks[3] + 10])  # mid-way through turn 3's record
    cut.write_bytes(cut.read_bytes()[:-3])  # the tail's last bytes (its parked record)
    check = journal_check(srv.data_dir)
    assert check.returncode == 1
    assert "1 damaged records, 2 torn tails" in check.stdout and f"{flipped.name}: damaged record" in check.stdout

    srv2 = start_server(*SCRIPTED, data_dir=srv.data_dir)
    turns = {s.sid: [t["user"] for t in (await snapshot(srv2.url, s.sid))["snap"]["turns"]] for s in sessions}
    assert turns[sessions[0].sid] == ["0", "2"]  # turn 2 lost to the flipped byte: turn 3 follows turn 1
    assert turns[sessions[1].sid] == ["0", "1"]  # turn 3 torn: it was never acknowledged as a whole
    assert all(turns[s.sid] == ["0", "1", "2"] for s in sessions[2:])
    f = await snapshot(srv2.url, sessions[0].sid)
    assert f["state"]["head"] == 3  # turn 3 is still there, past the lost one
    damaged = srv2.wait_event("journal_damaged_record")
    assert damaged["sid"] == sessions[0].sid and damaged["offset"] > 0
    assert {e["sid"] for e in srv2.log if e.get("event") == "journal_torn_tail"} == {sessions[1].sid, sessions[2].sid}
    assert srv2.signal(signal.SIGTERM) == 0  # parking the damaged session compacts it: the damaged file is kept
    aside = list((srv.data_dir / "damaged").iterdir())
    assert [p.name.split(".")[0] for p in aside] == [sessions[0].sid]
    assert journal_check(srv.data_dir).returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)]).returncode == 0
    )
    require(mounted, "mounting a small tmpfs needs root (the full-disk test)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)])


def fill(path: Path) -> None:
    """Write ``path`` until the disk is full, to the last byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError:
                continue
    finally:
        os.close(fd)


async def readyz(url: str) -> str:
    try:
        return (await http_get(url + "/readyz")).decode()
    except urllib.error.HTTPError as exc:
        with exc:  # its response holds the socket
            return f"{exc.code} {exc.read().decode()}"


async def test_a_full_disk_ends_turns_with_store_failed_until_space_returns(start_server, small_disk):
    srv = start_server(*SCRIPTED, data_dir=small_disk)
    http = srv.url.replace("ws://", "http://").rstrip("/")
    async with Client(srv.url, reconnect=False) as c:
        s = await c.open_session()
        kept = await (await s.say("before")).result()
        filler = small_disk / "filler"
        fill(filler)
        lost = await (await s.say("on a full disk " + "x" * 8000)).result()  # more than a page's slack
        assert (lost.reason, lost.code) == ("error", "store_failed")
        assert (await readyz(http)).startswith("503 degraded")
        filler.unlink()
        back = await (await s.say("after")).result()
        assert back.reason == "stop" and (await readyz(http)).startswith("ready")
    assert back.tid > lost.tid > kept.tid
    snap = await snapshot(srv.url, s.sid)
    assert [t["user"] for t in snap["snap"]["turns"]] == ["before", "after"]


async def test_only_the_sessions_named_are_loaded_from_100_000_stored(start_server, tmp_path):
    data = tmp_path / "data"
    store = LocalStore(data, "test")
    for i in range(100_000):
        sid = f"s{i:07d}"
        path = store.path(sid)
        if i % 1000 == 0 or not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        session = SessionData(sid, f"persona {i}", {}, "default")
        session.history.commit(TurnNode(1, 0, "say", f"line {i}", f"reply {i}", "stop"))
        path.write_bytes(R.compacted(session, TID_BLOCK, None))
    srv = start_server(*SCRIPTED, data_dir=data)
    http = srv.url.replace("ws://", "http://").rstrip("/")
    assert b"\nrtserver_sessions 0.0" in await http_get(http + "/metrics")
    f = await snapshot(srv.url, "s0054321")
    assert f["state"]["persona"] == "persona 54321" and f["snap"]["turns"][0]["reply"] == "reply 54321"
    metrics = (await http_get(http + "/metrics")).decode()
    assert "\nrtserver_sessions 1.0" in metrics and "rtserver_sessions_paged_in_total 1.0" in metrics
    r = await Raw.connect(srv.url)
    await r.send({"t": "session.open", "id": 1, "sid": "s9999999"})
    err, _ = await r.until("error")
    assert err["code"] == "unknown_session"
