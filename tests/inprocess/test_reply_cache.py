"""Identical turns in flight at once, in one process: one generation, and a waiting turn that is cancelled ends
at once. The SteppedEngine holds the first turn for as long as the test likes, so "in flight" is the test's doing."""

from __future__ import annotations

from rtclient import Client

GREEDY = {"temperature": 0}


async def test_identical_turns_in_flight_share_one_generation(serve):
    srv = await serve()
    engine = srv.engine
    async with Client(srv.url) as c:
        a, b = [await c.open_session(persona="You are Bram.", params=GREEDY) for _ in range(2)]
        leader = await a.say("What do you sell?")
        await engine.until_started(1)
        follower = await b.say("What do you sell?")  # turn.start came: it is waiting for the leader's reply
        engine.finish()
        r_leader, r_follower = await leader.result(), await follower.result()
    assert (r_leader.cache, r_follower.cache) == ("miss", "hit")
    assert r_follower.text == r_leader.text and r_follower.reason == "stop"
    assert engine.events == [("start", "What do you sell?"), ("end", "What do you sell?")]  # one generation


async def test_a_waiting_turn_cancelled_ends_at_once_and_the_leader_goes_on(serve):
    srv = await serve()
    engine = srv.engine
    async with Client(srv.url) as c:
        a, b, later = [await c.open_session(params=GREEDY) for _ in range(3)]
        leader = await a.say("Tell me of the north road")
        await engine.until_started(1)
        follower = await b.say("Tell me of the north road")
        await b.cancel()
        r_follower = await follower.result()  # the leader is still held: only the cancel can have ended it
        assert r_follower.reason == "cancelled" and r_follower.text == ""
        engine.finish()
        assert (await leader.result()).reason == "stop"
        r_later = await (await later.say("Tell me of the north road")).result()
    assert r_later.cache == "hit"
    assert [what for what, _ in engine.events] == ["start", "end"]


async def test_a_cancelled_leader_is_not_cached_and_its_follower_generates(serve):
    srv = await serve()
    engine = srv.engine
    async with Client(srv.url) as c:
        a, b = [await c.open_session(params=GREEDY) for _ in range(2)]
        leader = await a.say("Sing")
        await engine.until_started(1)
        follower = await b.say("Sing")
        await a.cancel()
        assert (await leader.result()).reason == "cancelled"
        await engine.until_started(2)  # the follower found no reply and leads the next flight
        engine.finish()
        r_follower = await follower.result()
    assert r_follower.cache == "miss" and r_follower.reason == "stop"
    assert [what for what, _ in engine.events] == ["start", "end", "start", "end"]
