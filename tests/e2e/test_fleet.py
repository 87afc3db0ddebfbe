"""Three ``rtserver serve`` nodes sharing one real ``redis-server``: a session is served from any node, resumed
on any node, followed from several, and survives its node's restart or death. Scripted engine throughout; nothing
here waits on a timer or asserts a time."""

from __future__ import annotations

import asyncio
import random
import signal
import zlib
from typing import Any

import pytest
import websockets

from ..helpers import Raw, http_get

LEASE = "1.0"  # seconds: a dead node's sessions are free this long after its last renewal


@pytest.fixture(params=["single"])
def redis_url(request):  # type: ignore[no-untyped-def]
    """A single redis-server; the tests that run on both also get a local 3-master Redis Cluster."""
    backend = request.getfixturevalue("redis_cluster" if request.param == "cluster" else "redis_server")
    return backend.url


BOTH = pytest.mark.parametrize("redis_url", ["single", "cluster"], indirect=True)


@pytest.fixture
def fleet(start_server, redis_url):  # type: ignore[no-untyped-def]
    def start(name: str, *extra: str) -> Any:
        return start_server("--engine", "scripted", "--scripted-rate", "200", "--redis", redis_url,
                            "--node-id", name, "--lease-ttl", LEASE, *extra)  # fmt: skip

    nodes = [start(f"n{i}") for i in range(3)]
    nodes_start = start  # restarts and extra nodes in the tests
    return nodes, nodes_start


def seen(frames: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a client saw of a session's numbered frames, comparable across clients."""
    return [(f["seq"], f["t"], f.get("tid"), f.get("x")) for f in frames if "seq" in f and f["t"] != "session"]


async def say(raw: Raw, sid: str, text: str, fid: Any) -> list[dict[str, Any]]:
    await raw.send({"t": "say", "sid": sid, "text": text, "id": fid})
    _, frames = await raw.until("turn.end")
    return frames


@BOTH
async def test_a_turn_on_one_node_resumes_on_another_with_nothing_lost(fleet):
    (a, b, _), _ = fleet
    ra = await Raw.connect(a.url)
    s = await ra.open(persona="You are Bram.")
    frames = await say(ra, s["sid"], "hello", 1)
    end = frames[-1]
    rb = await Raw.connect(b.url)
    await rb.send({"t": "session.resume", "sid": s["sid"], "ep": s["ep"], "last_seq": 3, "id": "r"})
    reply, missed = await rb.until("turn.end")
    assert missed[0]["t"] == "session" and missed[0]["recovered"] is True and missed[0]["seq"] == end["seq"]
    assert seen(missed) == seen(frames)[3:]  # exactly the frames after seq 3, in order
    text = "".join(f["x"] for f in frames if f["t"] == "delta").encode()
    assert reply["xlen"] == len(text) and reply["xcrc"] == zlib.crc32(text)


@BOTH
async def test_clients_on_three_nodes_see_the_same_frames_in_the_same_order(fleet):
    (a, b, c), _ = fleet
    owner = await Raw.connect(a.url)
    s = await owner.open()
    other, spectator = await Raw.connect(b.url), await Raw.connect(c.url)
    for raw in (other, spectator):
        await raw.send({"t": "session.open", "sid": s["sid"], "id": "attach"})
        joined, _ = await raw.until("session")
        assert joined["seq"] == 0 and joined["snap"]["turns"] == []
    on_b = []
    for i in range(3):  # said on node B: carried to the owner, A
        on_b += await say(other, s["sid"], f"line {i}", i)
    _, on_a = await owner.until("turn.end")
    on_a += [f for _ in range(2) for f in (await owner.until("turn.end"))[1]]
    on_c = [f for _ in range(3) for f in (await spectator.until("turn.end"))[1]]
    assert seen(on_b) == seen(on_a) == seen(on_c)
    assert [f["seq"] for f in on_b if "seq" in f] == list(range(1, len(on_b) + 1))
    assert [f.get("id") for f in on_b if f["t"] == "turn.start"] == [0, 1, 2]
    assert metric(await http_get(b.http + "/metrics"), "rtserver_requests_forwarded_total") >= 3
    assert metric(await http_get(a.http + "/metrics"), "rtserver_requests_served_total") >= 3
    assert metric(await http_get(c.http + "/metrics"), "rtserver_frames_relayed_total") >= len(on_c)


def metric(text: bytes, name: str) -> float:
    line = next(ln for ln in text.decode().splitlines() if ln.startswith(name + " "))
    return float(line.split()[1])


async def test_an_error_from_the_owner_reaches_the_client_on_another_node(fleet):
    (a, b, _), _ = fleet
    ra = await Raw.connect(a.url)
    s = await ra.open()
    rb = await Raw.connect(b.url)
    await rb.send({"t": "rollback", "sid": s["sid"], "tid": 7, "id": "rb"})
    err, _ = await rb.until("error")
    assert err["code"] == "unknown_turn" and err["id"] == "rb"
    await rb.send({"t": "session.open", "sid": "no-such-session", "id": "x"})
    err, _ = await rb.until("error")
    assert err["code"] == "unknown_session"


async def test_200_random_disconnects_across_nodes_lose_and_repeat_no_frame(fleet):
    nodes, _ = fleet
    rng = random.Random(17)
    first = await Raw.connect(nodes[0].url)
    s = await first.open()
    sid, epoch, last = s["sid"], s["ep"], 0
    got: list[dict[str, Any]] = []
    await first.close()
    turns = 0
    for cycle in range(200):
        raw = await Raw.connect(rng.choice(nodes).url)
        await raw.send({"t": "session.resume", "sid": sid, "ep": epoch, "last_seq": last, "id": cycle})
        reply = await raw.recv()
        while reply.get("id") != cycle:  # frames of the session may come first; errors never
            assert reply["t"] != "error", reply
            reply = await raw.recv()
        assert reply["t"] == "session" and reply["recovered"] is True, reply
        if cycle % 4 == 0:  # a turn now and then, said on whichever node this cycle landed on
            await raw.send({"t": "say", "sid": sid, "text": f"turn {turns}", "id": f"say{cycle}"})
            turns += 1
        for _ in range(rng.randrange(0, 12)):
            try:
                async with asyncio.timeout(0.2):  # how long this cycle listens: a random cut, not a wait
                    f = await raw.recv()
            except TimeoutError:
                break
            if "seq" in f and f["t"] != "session":
                assert f["seq"] == last + 1, (f, last)
                last = f["seq"]
                got.append(f)
        raw.ws.transport.abort()  # dropped without a close handshake
    raw = await Raw.connect(nodes[0].url)
    await raw.send({"t": "session.resume", "sid": sid, "ep": epoch, "last_seq": last, "id": "final"})
    reply, _ = await raw.until("session")
    while last < reply["seq"] or any(f["t"] == "turn.start" for f in got[-1:]):
        f = await raw.recv()
        assert f["seq"] == last + 1
        last = f["seq"]
        got.append(f)
        if last >= reply["seq"] and f["t"] == "turn.end":
            break
    ends = [f for f in got if f["t"] == "turn.end"]
    starts = [f for f in got if f["t"] == "turn.start"]
    # A say sent just before its socket dropped may never arrive, or find a turn running: the client re-asks.
    # What may never happen is a turn run twice, or a turn without its end.
    ids = [f["id"] for f in starts]
    assert len(ids) == len(set(ids)) and set(ids) <= {f"say{c}" for c in range(0, 200, 4)}
    assert [f["tid"] for f in ends] == [f["tid"] for f in starts] and len(starts) > turns // 2
    for end in ends:
        text = "".join(f["x"] for f in got if f["t"] == "delta" and f["tid"] == end["tid"]).encode()
        assert end["reason"] == "stop" and end["xlen"] == len(text) and end["xcrc"] == zlib.crc32(text)


async def test_a_request_delivered_twice_runs_once(fleet, redis_server):
    """The forwarding path's idempotency: the same request id added twice to the owner's inbox."""
    import redis.asyncio as aioredis

    from rtserver.fleet.store import pack

    (a, _, _), _ = fleet
    owner = str(a.wait_event("fleet_joined")["node"])
    ra = await Raw.connect(a.url)
    s = await ra.open()
    r = aioredis.from_url(redis_server.url)
    req = {"rid": "same-id", "from": "tests.x", "sid": s["sid"], "op": "turn",
           "args": pack({"kind": "say", "user": "once", "params": {}, "id": "dup"})}  # fmt: skip
    await r.xadd(f"rt:node:{owner}:in", req)  # type: ignore[arg-type]
    await r.xadd(f"rt:node:{owner}:in", req)  # type: ignore[arg-type]
    answers = await r.xread({"rt:node:tests.x:out": "0-0"}, block=30000, count=2)
    while sum(len(e) for _, e in answers) < 2:
        answers = await r.xread({"rt:node:tests.x:out": "0-0"}, block=30000, count=2)
    _, frames = await ra.until("turn.end")
    await r.aclose()
    assert [f["t"] for f in frames].count("turn.start") == 1
    snap = await ra.open(sid=s["sid"], snapshot=True)
    assert [t["user"] for t in snap["snap"]["turns"]] == ["once"]


async def test_every_node_restarted_then_resume_recovers_exactly_what_was_missed(fleet):
    nodes, start = fleet
    raw = await Raw.connect(nodes[1].url)
    s = await raw.open()
    frames = await say(raw, s["sid"], "before the restart", 1)
    for n in nodes:
        assert n.signal(signal.SIGTERM) == 0
    fresh = [start(f"m{i}") for i in range(3)]
    raw = await Raw.connect(fresh[2].url)
    await raw.send({"t": "session.resume", "sid": s["sid"], "ep": s["ep"], "last_seq": 5, "id": "r"})
    reply, missed = await raw.until("turn.end")
    assert missed[0]["recovered"] is True and missed[0]["ep"] == s["ep"]
    assert seen(missed) == seen(frames)[5:]
    more = await say(raw, s["sid"], "after", 2)  # the session carries on, numbered after what came before
    assert more[0]["seq"] == frames[-1]["seq"] + 1 and more[-1]["reason"] == "stop"


@BOTH
async def test_sigterm_hands_sessions_over_and_clients_resume_on_another_node(fleet):
    (a, b, _), _ = fleet
    ra = await Raw.connect(a.url)
    s = await ra.open()
    frames = await say(ra, s["sid"], "one", 1)
    assert a.signal(signal.SIGTERM) == 0
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await ra.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    rb = await Raw.connect(b.url)
    await rb.send({"t": "session.resume", "sid": s["sid"], "ep": s["ep"], "last_seq": frames[-1]["seq"], "id": "r"})
    reply, _ = await rb.until("session")
    assert reply["recovered"] is True
    more = await say(rb, s["sid"], "two", 2)
    assert more[-1]["reason"] == "stop" and more[0]["seq"] == frames[-1]["seq"] + 1
    assert any(e.get("event") == "session_taken_over" for e in b.log) is False  # taken cleanly: not a takeover


@BOTH
async def test_kill_9_of_the_owner_loses_no_completed_turn_and_never_a_silent_gap(start_server, redis_url):
    def node(name: str) -> Any:
        return start_server("--engine", "scripted", "--scripted-rate", "40", "--scripted-words", "400",
                            "--redis", redis_url, "--node-id", name, "--lease-ttl", LEASE)  # fmt: skip

    a, b = node("a"), node("b")
    ra = await Raw.connect(a.url)
    s = await ra.open(params={"max_tokens": 3})
    done = [f for i in range(2) for f in await say(ra, s["sid"], f"kept {i}", i)]
    watcher = await Raw.connect(b.url)  # follows the session from node B through the relay
    await watcher.send({"t": "session.resume", "sid": s["sid"], "ep": s["ep"], "last_seq": done[-1]["seq"], "id": 0})
    await watcher.until("session")
    await ra.send({"t": "say", "sid": s["sid"], "text": "cut short", "params": {"max_tokens": 400}, "id": "cut"})
    await watcher.until("delta")  # the turn is running on A
    a.signal(signal.SIGKILL)
    rb = await Raw.connect(b.url)  # the next frame for the session, on B, waits out A's lease and takes it over
    await rb.send({"t": "session.resume", "sid": s["sid"], "ep": s["ep"], "last_seq": done[-1]["seq"], "id": "r"})
    await rb.until("session")
    await rb.send({"t": "say", "sid": s["sid"], "text": "after the crash", "id": "next"})
    try:  # the takeover closes the clients that followed the old epoch: they resume and get a snapshot
        await rb.until("turn.end")
    except websockets.ConnectionClosed as closed:
        assert closed.rcvd is not None and closed.rcvd.code == 1012
    old = await Raw.connect(b.url)
    await old.send({"t": "session.resume", "sid": s["sid"], "ep": s["ep"], "last_seq": done[-1]["seq"], "id": 1})
    again, _ = await old.until("session")
    assert again["recovered"] is False and again["why"] == "epoch_changed"  # never a quiet gap
    if again["snap"]["running"] is not None:
        await old.until("turn.end")
    snap = await old.open(sid=s["sid"], snapshot=True)
    turns = snap["snap"]["turns"]
    assert [t["user"] for t in turns] == ["kept 0", "kept 1", "cut short", "after the crash"]
    assert [t["reason"] for t in turns] == ["length", "length", "error", "length"]
    assert turns[2]["code"] == "node_lost"  # the turn cut short is reported, never silently dropped


async def readyz(url: str) -> tuple[int, str]:
    import urllib.error

    try:
        return 200, (await http_get(url + "/readyz")).decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_redis_down_and_back_fails_no_turn_and_writes_the_turns_back(start_server, redis_server):
    a = start_server("--engine", "scripted", "--scripted-rate", "200", "--redis", redis_server.url, "--node-id", "a")
    ra = await Raw.connect(a.url)
    s = await ra.open()
    await say(ra, s["sid"], "before", 0)
    redis_server.stop()
    ends = [(await say(ra, s["sid"], f"while down {i}", i + 1))[-1] for i in range(3)]
    assert [e["reason"] for e in ends] == ["stop"] * 3  # the owner serves on: journalled locally, still durable
    code, body = await readyz(a.http)
    assert code == 503 and "Redis is unreachable" in body
    redis_server.start()  # same port, same data (appendonly): what was acknowledged before is still there
    await asyncio.to_thread(a.wait_event, "store_recovered")
    assert (await readyz(a.http))[0] == 200
    b = start_server("--engine", "scripted", "--redis", redis_server.url, "--node-id", "b")
    rb = await Raw.connect(b.url)
    snap = await rb.open(sid=s["sid"], snapshot=True)  # read on another node: from Redis
    assert [t["user"] for t in snap["snap"]["turns"]] == ["before", "while down 0", "while down 1", "while down 2"]


async def test_a_node_starts_while_redis_is_down_and_says_so(start_server, tmp_path):
    from ..redisproc import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    a = start_server("--engine", "scripted", "--redis", url, "--node-id", "a")
    ra = await Raw.connect(a.url)
    await ra.send({"t": "session.open", "id": "o"})
    err, _ = await ra.until("error")
    assert err["code"] == "store_failed" and err["id"] == "o"


async def presence_client(url: str, name: str) -> Raw:
    raw = await Raw.connect(url, hello=False)
    await raw.send({"t": "hello", "client": name, "presence": True})
    await raw.until("welcome")
    return raw


@BOTH
async def test_presence_shows_who_is_attached_on_every_node(fleet):
    (a, b, c), _ = fleet
    ra = await presence_client(a.url, "owner")
    s = await ra.open()
    alone, _ = await ra.until("presence")
    assert [w["client"] for w in alone.get("present") or [alone["join"]]] == ["owner"]
    rb = await presence_client(b.url, "phone")
    await rb.send({"t": "session.open", "sid": s["sid"], "id": "b"})
    listed, _ = await rb.until("presence")
    while "present" not in listed:  # its own join may come first, relayed; the list is its answer
        listed, _ = await rb.until("presence")
    assert sorted(w["client"] for w in listed["present"]) == ["owner", "phone"]
    joined, _ = await ra.until("presence")
    while joined.get("join", {}).get("client") != "phone":
        joined, _ = await ra.until("presence")
    rc = await presence_client(c.url, "spectator")
    await rc.send({"t": "session.open", "sid": s["sid"], "id": "c"})
    await rc.until("session")
    for raw in (ra, rb):
        f, _ = await raw.until("presence")
        while f.get("join", {}).get("client") != "spectator":
            f, _ = await raw.until("presence")
    await rc.close()  # the spectator leaves: both others hear it
    for raw in (ra, rb):
        f, _ = await raw.until("presence")
        while f.get("leave", {}).get("client") != "spectator":
            f, _ = await raw.until("presence")
    plain = await Raw.connect(a.url)  # a client that did not ask for presence gets none of it
    await plain.send({"t": "session.open", "sid": s["sid"], "id": "p"})
    await plain.until("session")
    await plain.send({"t": "say", "sid": s["sid"], "text": "hi", "id": 1})
    _, frames = await plain.until("turn.end")
    assert "presence" not in [f["t"] for f in frames]


@BOTH
async def test_twenty_sessions_followed_from_another_node_at_once_all_arrive(fleet):
    (a, b, _), _ = fleet
    owners = [await Raw.connect(a.url) for _ in range(20)]
    sids = [(await own.open())["sid"] for own in owners]
    others = [await Raw.connect(b.url) for _ in range(20)]

    async def follow(other: Raw, sid: str) -> None:
        await other.send({"t": "session.open", "sid": sid, "id": "attach"})
        await other.until("session")

    await asyncio.gather(*(follow(o, sid) for o, sid in zip(others, sids, strict=True)))  # 20 subscribes at once
    for i, (own, sid) in enumerate(zip(owners, sids, strict=True)):
        await own.send({"t": "say", "sid": sid, "text": f"line {i}", "id": i})
    for own, other in zip(owners, others, strict=True):
        assert seen((await other.until("turn.end"))[1]) == seen((await own.until("turn.end"))[1])


async def test_journalled_turns_survive_kill_9_and_reach_redis(start_server, redis_server, tmp_path):
    args = ("--engine", "scripted", "--scripted-rate", "200", "--redis", redis_server.url, "--node-id", "a")
    a = start_server(*args, data_dir=tmp_path / "a")
    ra = await Raw.connect(a.url)
    s = await ra.open()
    redis_server.stop()
    ends = [(await say(ra, s["sid"], f"while down {i}", i))[-1] for i in range(2)]
    assert [e["reason"] for e in ends] == ["stop", "stop"]
    a.signal(signal.SIGKILL)  # its journalled turns are on disk only
    redis_server.start()
    again = start_server(*args, data_dir=tmp_path / "a")  # the node comes back: it writes them back
    await asyncio.to_thread(again.wait_event, "store_recovered")
    rb = await Raw.connect(again.url)
    snap = await rb.open(sid=s["sid"], snapshot=True)
    assert [t["user"] for t in snap["snap"]["turns"]] == ["while down 0", "while down 1"]
