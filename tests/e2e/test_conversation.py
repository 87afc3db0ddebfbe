"""Real-socket tests on the scripted engine: `rtserver serve` as a subprocess, the reference client and raw frames.

Nothing here depends on how fast the engine goes: tests that need a turn to be still running, or turns to start in
an order, are in tests/inprocess, where the test steps the engine by hand."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import websockets
from rtclient import Backoff, Client, RtClientError
from rtprotocol import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK

from ..helpers import Raw, http_get


def expected(user: str, words: int = 12) -> str:
    """What the scripted engine says, from a fresh server, for this user line and seed 1."""
    return f"You said: {user}."  # followed by words; compared by prefix where only the echo is known


@pytest.mark.parametrize("subprotocol", [SUBPROTOCOL_MSGPACK, SUBPROTOCOL_JSON])
async def test_multi_turn_conversation(scripted_server, subprotocol):
    async with Client(scripted_server.url, subprotocol=subprotocol) as c:
        s = await c.open_session(persona="You are Bram.", params={"seed": 1})
        texts = []
        for line in ("Hello", "Any work?", "Bye"):
            turn = await s.say(line)
            pieces = [p async for p in turn]
            r = await turn.result()
            assert r.reason == "stop" and r.text == "".join(pieces)
            assert r.text.startswith(expected(line)) and len(pieces) == 3 + 12
            assert r.usage["completion"] == 15 and r.timings["total_ms"] >= r.timings["ttft_ms"] > 0
            texts.append(r.text)
        assert s.state["running"] is None
        assert c.welcome["v"] == 1 and "max_text" in c.welcome["limits"]
        again = await Client(scripted_server.url).__aenter__()
        attached = await again.attach(s.sid)
        assert [t["reply"] for t in attached.snapshot["turns"]] == texts
        await again.close()


async def test_seed_determinism_and_regenerate_alternatives(scripted_server):
    async with Client(scripted_server.url) as c:
        a = await c.open_session(params={"seed": 5})
        b = await c.open_session(params={"seed": 5})
        ra = await (await a.say("same")).result()
        rb = await (await b.say("same")).result()
        assert ra.text == rb.text
        other = await (await a.regenerate(params={"seed": 6})).result()
        assert other.text != ra.text and other.tid != ra.tid
        snap = (await c.attach(a.sid)).snapshot
        assert [t["tid"] for t in snap["turns"]] == [other.tid]  # the head moved to the new alternative
        await a.rollback(0)
        assert a.state["turns"] == 0


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\xc1\xc1", "bad_frame"),
        ({"t": "fly"}, "unknown_type"),
        ({"t": "say", "text": 3, "id": 9}, "bad_field"),
        ({"t": "say", "text": "hi"}, "no_session"),
        ({"t": "session.resume", "sid": "nope", "ep": "x", "last_seq": 0}, "unknown_session"),
        ({"t": "session.open", "sid": "nope"}, "unknown_session"),
        ({"t": "session.open", "model": "gpt-9"}, "unknown_model"),
        ({"t": "say", "sid": "nope", "text": "hi"}, "unknown_session"),
        ({"t": "session.open", "persona": "x" * 20000}, "too_large"),
    ],
)
async def test_bad_input_gets_an_error_and_the_connection_lives(scripted_server, frame, code):
    r = await Raw.connect(scripted_server.url)
    if isinstance(frame, bytes):
        await r.ws.send(frame)
    else:
        await r.send(frame)
    err = await r.recv()
    assert err["t"] == "error" and err["code"] == code and err["msg"]
    if isinstance(frame, dict) and "id" in frame:
        assert err["id"] == frame["id"]
    await r.send({"t": "ping", "id": "alive"})
    assert await r.recv() == {"t": "pong", "id": "alive"}


async def test_frames_before_hello_and_text_in_binary_protocol(scripted_server):
    r = await Raw.connect(scripted_server.url, hello=False)
    await r.send({"t": "session.open"})
    assert (await r.recv())["code"] == "not_ready"
    await r.ws.send('{"t": "hello"}')  # text frame on the msgpack subprotocol
    assert (await r.recv())["code"] == "bad_frame"


async def test_oversized_frame_is_closed_with_1009(scripted_server):
    r = await Raw.connect(scripted_server.url)
    await r.send({"t": "say", "text": "x" * 70000})
    with pytest.raises(websockets.ConnectionClosed):
        await r.recv()
    assert r.ws.close_code == 1009


async def test_unsupported_subprotocol_is_refused_at_the_handshake(scripted_server):
    with pytest.raises(websockets.InvalidStatus) as info:
        await websockets.connect(scripted_server.url, subprotocols=["rt.v9.xml"])
    assert info.value.response.status_code == 400


async def test_flood_of_malformed_frames_is_closed_with_1008(scripted_server):
    r = await Raw.connect(scripted_server.url)
    with contextlib.suppress(websockets.ConnectionClosed):
        for _ in range(40):
            await r.ws.send(b"\xc1")
    codes = set()
    with contextlib.suppress(websockets.ConnectionClosed):
        while True:
            codes.add((await r.recv())["code"])
    assert codes == {"bad_frame"} and r.ws.close_code == 1008


async def test_http_endpoints(scripted_server):
    assert await http_get(f"{scripted_server.http}/healthz") == b"ok\n"
    assert await http_get(f"{scripted_server.http}/readyz") == b"ready\n"
    body = (await http_get(f"{scripted_server.http}/metrics")).decode()
    for name in (
        "rtserver_connections",
        "rtserver_time_to_first_token_seconds",
        "rtserver_inter_token_seconds",
        "rtserver_errors_total",
        "rtserver_turns_total",
        "rtserver_engine_generated_tokens_total",
    ):
        assert name in body


async def test_resume_beyond_the_log_gets_a_snapshot(start_server):
    srv = start_server("--engine", "scripted", "--scripted-rate", "0", env={"RTSERVER_FRAME_LOG": "8"})
    r = await Raw.connect(srv.url)
    sess = await r.open()
    await r.send({"t": "say", "text": "hi"})
    end, _ = await r.until("turn.end")
    await r.send({"t": "session.resume", "id": 2, "sid": sess["sid"], "ep": sess["ep"], "last_seq": 1})
    reply = await r.recv()
    assert (reply["recovered"], reply["why"]) == (False, "gap_too_old")
    assert reply["snap"]["turns"][0]["reply"].startswith(expected("hi"))
    assert reply["seq"] == end["seq"]


async def test_slow_reader_is_cut_off_and_memory_stays_bounded(start_server):
    srv = start_server(
        "--engine",
        "scripted",
        "--scripted-rate",
        "0",
        "--scripted-words",
        "400000",
        env={"RTSERVER_SEND_QUEUE": "256", "RTSERVER_MAX_TOKENS": "400000", "RTSERVER_HEARTBEAT": "0"},
    )
    rss0 = rss_kib(srv.proc.pid)
    r = await Raw.connect(srv.url, max_queue=4)
    await r.open()
    await r.send({"t": "say", "text": "flood", "params": {"max_tokens": 400000}})
    # Never read: the server's queue for us fills and it cuts us off instead of buffering. (A client that
    # never reads cannot see the close frame behind the data it did not read: it sees the TCP connection end.)
    event = await asyncio.to_thread(srv.wait_event, "closing", code=4008)
    assert "read your frames" in event["reason"]
    # With heartbeats off, only the cut-off itself can make the server let go of the connection.
    gone = await asyncio.to_thread(srv.wait_event, "connection", frames_in=3)
    assert gone["close_code"] in (4008, 1006)
    other = await Raw.connect(srv.url)
    await other.send({"t": "ping", "id": 1})
    assert (await other.recv())["t"] == "pong"
    assert rss_kib(srv.proc.pid) - rss0 < 64 * 1024


async def wait_closed(r: Raw) -> int | None:
    await r.ws.wait_closed()
    return r.ws.close_code


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


async def test_a_clean_restart_keeps_sessions_and_their_frame_logs(start_server, tmp_path):
    """SIGTERM writes each session's frame log to the store: a resume across the restart recovers."""
    import signal

    srv = start_server("--engine", "scripted", "--scripted-rate", "0")
    async with Client(srv.url, reconnect=False) as c:
        s = await c.open_session(persona="P")
        texts = [(await (await s.say(f"t{i}")).result()).text for i in range(3)]
        ep, last = s.tracker.epoch, s.tracker.last_seq
    assert srv.signal(signal.SIGTERM) == 0
    srv2 = start_server("--engine", "scripted", "--scripted-rate", "0", data_dir=srv.data_dir)
    r = await Raw.connect(srv2.url)
    await r.send({"t": "session.resume", "id": 1, "sid": s.sid, "ep": ep, "last_seq": last - 2})
    reply = await r.recv()
    assert (reply["recovered"], reply["ep"], reply["seq"]) == (True, ep, last)
    assert [(await r.recv())["seq"] for _ in range(2)] == [last - 1, last]  # exactly what it missed
    await r.send({"t": "session.open", "id": 2, "sid": s.sid})
    snap, _ = await r.until("session")
    assert [t["reply"] for t in snap["snap"]["turns"]] == texts and snap["state"]["persona"] == "P"


async def test_after_kill_9_a_resume_says_epoch_changed_and_gets_the_history(start_server):
    import signal

    srv = start_server("--engine", "scripted", "--scripted-rate", "0")
    async with Client(srv.url, reconnect=False) as c:
        s = await c.open_session(persona="P")
        texts = [(await (await s.say(f"t{i}")).result()).text for i in range(3)]
        ep, last = s.tracker.epoch, s.tracker.last_seq
    srv.signal(signal.SIGKILL)
    srv2 = start_server("--engine", "scripted", "--scripted-rate", "0", data_dir=srv.data_dir)
    r = await Raw.connect(srv2.url)
    await r.send({"t": "session.resume", "id": 1, "sid": s.sid, "ep": ep, "last_seq": last})
    reply = await r.recv()
    assert (reply["recovered"], reply["why"]) == (False, "epoch_changed")
    assert [t["reply"] for t in reply["snap"]["turns"]] == texts
    assert reply["state"]["persona"] == "P"


async def test_kill_9_loses_no_completed_turn(start_server):
    import signal

    srv = start_server("--engine", "scripted", "--scripted-rate", "0")
    done: dict[str, list[str]] = {}
    async with Client(srv.url, reconnect=False) as c:
        sessions = [await c.open_session() for _ in range(4)]

        async def talk(s):
            done[s.sid] = []
            for i in range(5):
                done[s.sid].append((await (await s.say(f"{s.sid[:4]} {i}")).result()).text)

        await asyncio.gather(*(talk(s) for s in sessions))
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    srv2 = start_server("--engine", "scripted", "--scripted-rate", "0", data_dir=srv.data_dir)
    async with Client(srv2.url) as c2:
        for sid, texts in done.items():
            snap = (await c2.attach(sid)).snapshot
            assert [t["reply"] for t in snap["turns"]] == texts


async def test_sigterm_closes_clients_1012_and_exits_0(start_server):
    """The signal itself; that a turn running at the time still finishes is tests/inprocess (draining)."""
    import signal

    srv = start_server("--engine", "scripted", "--scripted-rate", "0")
    r = await Raw.connect(srv.url)
    await r.open()
    await r.send({"t": "say", "text": "done before"})
    await r.until("turn.end")
    srv.proc.send_signal(signal.SIGTERM)
    assert await wait_closed(r) == 1012
    assert srv.proc.wait(timeout=30) == 0


async def test_several_clients_share_a_session(scripted_server):
    async with Client(scripted_server.url) as a, Client(scripted_server.url) as b:
        s = await a.open_session()
        watcher = await b.attach(s.sid)
        turn = await s.say("together")
        r = await turn.result()
        # The server queued the turn's frames to b's socket as it sent them to a's, so they are ahead of this pong.
        await b.ping()
        assert watcher.tracker.last_seq == s.tracker.last_seq and watcher.state["running"] is None
        assert r.reason == "stop"


async def test_update_and_close(scripted_server):
    async with Client(scripted_server.url) as c:
        s = await c.open_session(persona="old")
        await s.update(persona="new", params={"max_tokens": 3})
        assert s.state["persona"] == "new" and s.state["params"]["max_tokens"] == 3
        r = await (await s.say("x")).result()
        assert r.reason == "length" and r.usage["completion"] == 3
        await s.close()
        with pytest.raises(RtClientError) as info:
            await c.attach(s.sid)
        assert info.value.code == "unknown_session"


async def test_rtclient_chat_terminal(scripted_server):
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rtclient.cli",
        "chat",
        scripted_server.url,
        "--persona",
        "You are Bram.",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(b"hello there\n/regen\n/quit\n")
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    assert text.count("You said: hello there.") == 2  # the reply and its regenerated alternative
    assert text.count("[stop;") == 2


async def test_stop_strings_and_models_by_name(start_server, tmp_path):
    cfg = tmp_path / "rt.toml"
    cfg.write_text('engine = "scripted"\nscripted_rate = 0\n[models]\nnpc = "any.gguf"\n')
    srv = start_server("--config", str(cfg))
    async with Client(srv.url) as c:
        assert sorted(c.welcome["models"]) == ["default", "npc"]
        s = await c.open_session(model="npc")
        assert s.state["model"] == "npc"
        r = await (await s.say("hello", params={"stop": [" said:"]})).result()
        assert (r.text, r.reason) == ("You", "stop")


async def test_a_session_closed_elsewhere_is_gone_here(scripted_server):
    async with Client(scripted_server.url) as a, Client(scripted_server.url) as b:
        s = await a.open_session()
        other = await b.attach(s.sid)
        await s.close()
        with pytest.raises(RtClientError) as info:
            await other.say("still there?")
        assert info.value.code == "unknown_session"


async def test_sessions_per_connection_are_bounded(start_server):
    srv = start_server("--engine", "scripted", env={"RTSERVER_MAX_SESSIONS_PER_CONNECTION": "3"})
    r = await Raw.connect(srv.url)
    for _ in range(3):
        assert (await r.open())["t"] == "session"
    await r.send({"t": "session.open", "id": "x"})
    err = await r.recv()
    assert (err["code"], err["id"]) == ("too_many_sessions", "x")


async def test_tls(start_server, tmp_path):
    import shutil
    import ssl
    import subprocess

    from ..conftest import require

    require(shutil.which("openssl") is not None, "openssl is not installed (apt-get install openssl)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cmd = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert)]
    cmd += ["-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"]
    await asyncio.to_thread(subprocess.run, cmd, check=True, capture_output=True)
    srv = start_server("--engine", "scripted", "--tls-cert", str(cert), "--tls-key", str(key))
    assert srv.url.startswith("wss://")
    ctx = ssl.create_default_context(cafile=str(cert))
    r = await Raw.connect(srv.url, ssl=ctx)
    await r.send({"t": "ping", "id": 1})
    assert await r.recv() == {"t": "pong", "id": 1}


async def test_hello_timeout_closes_4010(start_server):
    srv = start_server("--engine", "scripted", env={"RTSERVER_HELLO_TIMEOUT": "0.2"})
    r = await Raw.connect(srv.url, hello=False)
    with pytest.raises(websockets.ConnectionClosed):
        await r.recv()
    assert r.ws.close_code == 4010


async def test_a_peer_that_stops_answering_pings_is_closed(start_server):
    """A raw TCP peer that completes the handshake and then goes silent (no pongs) is dropped by the heartbeat."""
    srv = start_server("--engine", "scripted", env={"RTSERVER_HEARTBEAT": "0.2", "RTSERVER_HELLO_TIMEOUT": "60"})
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    writer.write(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await writer.drain()
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    gone = await asyncio.to_thread(srv.wait_event, "connection", frames_in=0)
    assert gone["close_code"] in (1011, 1006)
    writer.close()


async def test_client_that_cannot_reconnect_fails_instead_of_hanging(start_server):
    import signal

    from rtclient import ConnectionLost

    srv = start_server("--engine", "scripted")
    async with Client(srv.url, backoff=Backoff(base=0.01, cap=0.02, max_attempts=2)) as c:
        s = await c.open_session()
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        with pytest.raises(ConnectionLost):
            await (await s.say("anyone?")).result()
        with pytest.raises(ConnectionLost):
            await s.say("still?")


async def test_priority_must_be_in_range(scripted_server):
    async with Client(scripted_server.url) as c:
        s = await c.open_session()
        with pytest.raises(RtClientError) as info:
            await s.say("hi", params={"priority": 99})
        assert info.value.code == "bad_field" and "priority" in str(info.value)
