"""Turns that outlive their connection: drops, resumes, the resume grace and draining, with the real Server
in-process and a SteppedEngine, so the turn is mid-reply whenever the test says it is."""

from __future__ import annotations

import random

from rtclient import Backoff, Client

from rtserver.engine.scripted import SteppedEngine

from ..helpers import Raw

FAST = Backoff(base=0.01, cap=0.05)


async def test_reconnect_resume_loses_and_repeats_nothing(serve):
    """Drop the socket at random points of running turns, many times; the caller sees every reply exactly as a
    clean run does. The engine produces the next token only once the client has the last one, so every drop
    lands in the middle of a turn and every piece after it comes through a resume."""
    srv = await serve(engine=SteppedEngine(words=40), cache_entries=0)  # the same lines again: generated, not hits
    engine = srv.engine
    tokens = 3 + 40  # "You said: <line>." and the words
    rng = random.Random(7)
    lines = [f"line {i}" for i in range(12)]
    engine.run_freely()
    async with Client(srv.url, reconnect=False) as clean:
        ref = await clean.open_session(params={"seed": 3})
        want = [(await (await ref.say(line)).result()).text for line in lines]
    engine.free = False
    async with Client(srv.url, backoff=FAST) as c:
        s = await c.open_session(params={"seed": 3})
        drops = 0
        for line, text in zip(lines, want, strict=True):
            turn = await s.say(line)
            await engine.until_running(1)
            engine.step()
            cut_at = {rng.randrange(1, tokens) for _ in range(2)}
            got = []
            async for piece in turn:
                got.append(piece)
                if len(got) in cut_at:
                    c.ws.transport.abort()  # a network drop, not a clean close
                    drops += 1
                if len(got) < tokens:
                    engine.step()
            r = await turn.result()
            assert "".join(got) == text == r.text
        assert c.reconnects == drops > 10


async def test_resume_within_grace_continues_the_running_turn(serve):
    srv = await serve()
    engine = srv.engine
    r = await Raw.connect(srv.url)
    sess = await r.open()
    await r.send({"t": "say", "text": "hi"})
    await engine.until_started(1)
    engine.step()
    _, seen = await r.until("delta")
    last = seen[-1]["seq"]
    r.ws.transport.abort()
    r2 = await Raw.connect(srv.url)
    await r2.send({"t": "session.resume", "id": 1, "sid": sess["sid"], "ep": sess["ep"], "last_seq": last})
    reply = await r2.recv()
    assert reply["t"] == "session" and reply["recovered"] is True
    assert reply["state"]["running"] is not None  # held at one token: the resume met the turn mid-reply
    engine.finish()
    end, frames = await r2.until("turn.end")
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(last + 1, end["seq"] + 1))  # every frame after last_seq, in order, once
    assert [f["t"] for f in frames].count("delta") == 15 - 1
    assert end["reason"] == "stop"


async def test_turn_abandoned_past_grace_ends_cancelled(serve):
    srv = await serve(resume_grace=0.05)  # the grace is the behaviour under test; the turn never outruns it
    engine = srv.engine
    r = await Raw.connect(srv.url)
    sess = await r.open()
    await r.send({"t": "say", "text": "hi", "params": {"max_tokens": 100}})
    await engine.until_started(1)
    engine.step(2)
    for _ in range(2):
        await r.until("delta")
    r.ws.transport.abort()
    await srv.logs.wait("turn_abandoned", sid=sess["sid"])
    end = await srv.logs.wait("turn", sid=sess["sid"])
    assert end["reason"] == "cancelled"
    watcher = await Raw.connect(srv.url)
    snap = await watcher.open(sid=sess["sid"])
    last = snap["snap"]["turns"][-1]
    assert last["reason"] == "cancelled" and last["usage"]["completion"] == 2
    assert snap["state"]["running"] is None


async def test_draining_lets_a_running_turn_finish_then_closes_1012(serve):
    """What SIGTERM starts (the e2e tier sends the signal itself): a turn running at the time ends normally."""
    srv = await serve()
    engine = srv.engine
    r = await Raw.connect(srv.url)
    await r.open()
    await r.send({"t": "say", "text": "finish me"})
    await engine.until_started(1)
    engine.step()
    await r.until("delta")
    srv.server._stop.set()  # what the server's SIGTERM handler does
    draining = await srv.logs.wait("draining")
    assert draining["turns"] == 1
    engine.finish()
    end, _ = await r.until("turn.end")
    assert end["reason"] == "stop" and end["usage"]["completion"] == 15
    await r.ws.wait_closed()
    assert r.ws.close_code == 1012
    await srv.task  # the server stopped: run() returned
