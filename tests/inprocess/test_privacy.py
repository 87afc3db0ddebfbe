"""Privacy requests: ``session.delete`` takes a session's audit texts with it; ``rtserver sessions erase --user``
removes everything stored of a user and leaves the audit chain verifiable."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from rtserver.audit.chain import ERASED, verify
from rtserver.audit.log import files
from rtserver.auth.tokens import mint
from rtserver.privacy import erase_audit, erase_sessions

from ..helpers import Raw

SECRET = "test-secret"


def audit_records(data: Path) -> list[dict]:
    return [orjson.loads(x) for p in files(data / "audit") for x in p.read_bytes().splitlines() if x.strip()]


def chain_ok(data: Path) -> bool:
    lines = [x for p in files(data / "audit") for x in p.read_bytes().splitlines() if x.strip()]
    return verify(lines)[1] == []


async def as_user(url: str, user: str) -> Raw:
    r = await Raw.connect(url, hello=False)
    await r.send({"t": "hello", "token": mint(SECRET, user, 600, now=time.time())})
    assert (await r.recv())["t"] == "welcome"
    return r


async def talk(r: Raw, text: str) -> str:
    sid = (await r.open())["sid"]
    await r.send({"t": "say", "sid": sid, "text": text})
    await r.until("turn.end")
    return sid


async def test_session_delete_erases_its_audit_texts(serve, tmp_path: Path):
    data = tmp_path / "data"
    srv = await serve(auth="on", token_secret=SECRET, audit_policy="full")
    srv.engine.run_freely()
    r = await as_user(srv.url, "ann")
    gone, kept = await talk(r, "forget me"), await talk(r, "keep me")
    await r.send({"t": "session.delete", "sid": gone, "id": "d"})
    closed, _ = await r.until("session.closed")
    await r.send({"t": "session.open", "sid": gone, "id": "x"})
    assert (await r.recv())["code"] == "unknown_session"
    await srv.stop()  # everything written
    by_sid = {rec["h"]["sid"]: rec["b"] for rec in audit_records(data) if rec["h"]["kind"] == "turn"}
    assert by_sid[gone] == ERASED and by_sid[kept]["text"] == "keep me"
    assert chain_ok(data)


async def test_erase_a_user_removes_their_sessions_and_audit_texts_only(serve, tmp_path: Path):
    data = tmp_path / "data"
    srv = await serve(auth="on", token_secret=SECRET, audit_policy="full")
    srv.engine.run_freely()
    ann, bob = await as_user(srv.url, "ann"), await as_user(srv.url, "bob")
    ann_sids = {await talk(ann, "ann's secret"), await talk(ann, "more of ann")}
    bob_sid = await talk(bob, "bob's line")
    await srv.stop()
    assert erase_sessions(data, "ann") == ann_sids
    assert erase_audit(data, "ann", ann_sids) == (2, [])
    stored = {p.stem for p in (data / "sessions").rglob("*.log")}
    assert stored == {bob_sid}
    texts = [rec["b"].get("text") for rec in audit_records(data) if rec["h"]["kind"] == "turn"]
    assert "bob's line" in texts and not any(t and "ann" in t for t in texts)
    assert chain_ok(data)


async def test_erase_leaves_a_running_nodes_audit_alone(serve, tmp_path: Path):
    data = tmp_path / "data"
    srv = await serve(audit_policy="full")
    srv.engine.run_freely()
    await talk(await Raw.connect(srv.url), "hi")
    erased, busy = erase_audit(data, "ann", set())
    assert (erased, busy) == (0, [srv.server.node_id])  # its writer holds the lock


async def test_a_slow_audit_disk_sheds_new_turns_and_reports_degraded_but_loses_nothing(serve, tmp_path: Path):
    import threading
    import urllib.error

    from ..helpers import http_get

    srv = await serve(audit_buffer=1)
    gate = threading.Event()
    srv.server.audit.slow_disk = lambda: gate.wait(60)  # the disk takes as long as the test says
    srv.engine.run_freely()
    r = await Raw.connect(srv.url)
    await talk(r, "one")  # its record is now on its way to a disk that does not answer
    await r.send({"t": "say", "text": "two", "id": "2"})
    f = await r.recv()
    assert (f["code"], f["id"]) == ("busy", "2") and f["retry_after"] > 0
    try:
        await http_get(srv.http + "/readyz")
        raise AssertionError("ready while the audit log is behind")
    except urllib.error.HTTPError as exc:
        assert exc.code == 503 and b"audit" in exc.read()
    gate.set()
    await srv.stop()
    turns = [rec for rec in audit_records(tmp_path / "data") if rec["h"]["kind"] == "turn"]
    assert len(turns) == 1 and turns[0]["b"]["text"].startswith("sha256:")
