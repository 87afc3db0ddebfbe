"""Sessions on demand and the connection's rules, in-process: a session leaves memory when idle and comes back
with its epoch and seq (a resume across it recovers); frame logs age out; unknown frame types never close a
connection, malformed frames faster than the budget do; numbers outside the protocol's range are refused."""

from __future__ import annotations

import math

from rtprotocol import errors as E

from rtserver.filters import build_pipeline
from rtserver.metrics import Metrics
from rtserver.settings import Settings

from ..helpers import Raw


async def test_an_idle_session_leaves_memory_and_a_resume_across_it_recovers(serve):
    srv = await serve(session_idle_s=0.05)
    srv.engine.run_freely()
    r = await Raw.connect(srv.url)
    s = await r.open()
    await r.send({"t": "say", "text": "hi"})
    end, _ = await r.until("turn.end")
    await r.close()
    await srv.logs.wait("sessions_paged_out")
    assert s["sid"] not in srv.server.manager.sessions
    r = await Raw.connect(srv.url)
    await r.send({"t": "session.resume", "id": 1, "sid": s["sid"], "ep": s["ep"], "last_seq": end["seq"] - 1})
    back = await r.recv()
    assert (back["recovered"], back["ep"], back["seq"]) == (True, s["ep"], end["seq"])
    assert (await r.recv()) == end  # the one frame it missed, as it was
    assert s["sid"] in srv.server.manager.sessions and srv.server.manager.paged_in == 1
    await r.send({"t": "say", "text": "again"})
    start, _ = await r.until("turn.start")
    assert (start["tid"], start["seq"]) == (end["tid"] + 1, end["seq"] + 1)


async def test_frames_older_than_the_ttl_are_dropped_and_a_resume_gets_a_snapshot(serve):
    srv = await serve(frame_log_ttl=0.05, session_idle_s=3600)
    srv.engine.run_freely()
    r = await Raw.connect(srv.url)
    s = await r.open()
    await r.send({"t": "say", "text": "hi"})
    end, _ = await r.until("turn.end")
    await srv.logs.wait("frames_aged_out", sid=s["sid"])
    r2 = await Raw.connect(srv.url)
    await r2.send({"t": "session.resume", "id": 1, "sid": s["sid"], "ep": s["ep"], "last_seq": end["seq"] - 3})
    back = await r2.recv()
    assert (back["recovered"], back["why"], back["seq"]) == (False, "gap_too_old", end["seq"])
    assert [t["user"] for t in back["snap"]["turns"]] == ["hi"]
    await r2.send({"t": "session.resume", "id": 2, "sid": s["sid"], "ep": s["ep"], "last_seq": end["seq"]})
    assert (await r2.recv())["recovered"] is True  # nothing missed: nothing to replay


async def test_unknown_frame_types_never_close_a_connection(serve):
    srv = await serve()
    r = await Raw.connect(srv.url)
    for i in range(1000):
        await r.send({"t": "from.the.future", "id": i})
    await r.send({"t": "ping", "id": "last"})
    codes = set()
    while (f := await r.recv())["t"] != "pong":
        codes.add(f["code"])
    assert codes == {"unknown_type"}


async def test_malformed_frames_faster_than_the_budget_close_with_1008(serve):
    srv = await serve(bad_frames_burst=5, bad_frames_per_s=0.001)
    r = await Raw.connect(srv.url)
    for i in range(7):
        await r.send({"t": "say", "id": i, "text": 5})
    seen = 0
    try:
        while True:
            assert (await r.recv())["code"] == "bad_field"
            seen += 1
    except Exception:
        pass
    assert r.ws.close_code == E.CLOSE_POLICY and seen == 6


async def test_non_finite_and_unsafe_numbers_get_bad_field_in_every_numeric_field(serve):
    srv = await serve()
    r = await Raw.connect(srv.url)
    s = await r.open()
    frames = [
        {"t": "say", "text": "x", "params": {key: value}}
        for key in ("temperature", "top_p", "seed", "max_tokens", "priority")
        for value in (math.nan, math.inf, 2**60)
    ]
    frames += [
        {"t": "rollback", "tid": 2**60},
        {"t": "session.resume", "sid": s["sid"], "ep": s["ep"], "last_seq": 2**60},
        {"t": "ping", "ts": math.nan},
    ]
    for f in frames:
        await r.send({**f, "id": "n"})
        reply = await r.recv()
        assert reply["code"] == "bad_field", f


def test_the_filters_run_in_the_documented_order():
    pipeline = build_pipeline(Settings(engine="scripted"), {}, Metrics(), lambda: False)
    assert pipeline.names == (
        "connection:upgrade",
        "connection:draining",
        "connection:client_ip",
        "connection:origin",
        "connection:limits",
        "connection:shed",
        "admit:grammar",
        "admit:tokens",
        "admit:admission",
        "turn:errors",
        "turn:metrics",
        "turn:tokens",
        "turn:admission",
        "turn:cache",
        "turn:engine",
    )


async def test_limits_are_announced_as_they_are(serve):
    srv = await serve(resume_grace=0.25, frame_log_ttl=90.5, bad_frames_burst=7, bad_frames_per_s=0.5)
    r = await Raw.connect(srv.url, hello=False)
    await r.send({"t": "hello"})
    limits = (await r.recv())["limits"]
    assert (limits["resume_grace_s"], limits["frame_log_ttl_s"]) == (0.25, 90.5)
    assert (limits["bad_frames_burst"], limits["bad_frames_per_s"]) == (7, 0.5)


async def test_an_error_names_the_session_of_the_frame_that_caused_it(serve):
    srv = await serve()
    r = await Raw.connect(srv.url)
    s = await r.open()
    await r.send({"t": "rollback", "id": 3, "sid": s["sid"], "tid": 99})
    err = await r.recv()
    assert (err["code"], err["id"], err["sid"]) == ("unknown_turn", 3, s["sid"])


async def test_at_most_max_resident_sessions_are_in_memory_idle_ones_leave_first(serve):
    srv = await serve(max_resident_sessions=2)
    m = srv.server.manager
    r = await Raw.connect(srv.url)
    a, b = await r.open(), await r.open()
    await r.send({"t": "session.open", "id": "third"})
    refused, _ = await r.until("error")  # both are attached: none may leave
    assert (refused["code"], refused["id"]) == ("busy", "third")
    await r.close()
    await srv.logs.wait("connection")  # the server saw the close: a and b are idle now
    r = await Raw.connect(srv.url)
    c = await r.open()
    assert set(m.sessions) == {b["sid"], c["sid"]}  # the least recently used left
    await r.send({"t": "session.open", "id": 1, "sid": a["sid"]})
    back, _ = await r.until("session")
    assert back["sid"] == a["sid"] and set(m.sessions) == {a["sid"], c["sid"]}


def test_a_draining_node_refuses_new_sessions_and_turns_but_not_cancels():
    import pytest
    from rtprotocol import ProtocolError

    from rtserver.filters.base import Client
    from rtserver.filters.draining import DrainingFilter

    draining = False
    f, c = DrainingFilter(lambda: draining), Client("127.0.0.1")
    f.frame({"t": "say", "text": "hi"}, c)
    assert f.handshake("/", {}, c) is None
    draining = True
    for kind in ("say", "regenerate", "continue", "session.open"):
        with pytest.raises(ProtocolError) as info:
            f.frame({"t": kind, "id": 4}, c)
        assert (info.value.code, info.value.frame_id) == ("shutting_down", 4)
    for kind in ("cancel", "session.resume", "session.close", "ping"):
        f.frame({"t": kind}, c)
    assert f.handshake("/", {}, c).status == 503
