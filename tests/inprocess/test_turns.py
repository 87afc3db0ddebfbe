"""Turns that wait, overtake, are refused or cancelled: the real Server in-process with a SteppedEngine.

A turn is "still running" here because the test has not stepped it, and what is asserted is the order the
engine recorded (``engine.events``) and exact token counts, never a duration.
"""

from __future__ import annotations

import pytest
from rtclient import Client, RtClientError

from ..helpers import Raw


async def pieces(turn, n: int) -> list[str]:
    """The first ``n`` text pieces of a turn as the client receives them."""
    it = turn.__aiter__()
    return [await it.__anext__() for _ in range(n)]


async def test_a_higher_priority_turn_overtakes_waiting_ones(serve):
    srv = await serve(slots=1)
    engine = srv.engine
    async with Client(srv.url) as c:
        busy, low, high = [await c.open_session() for _ in range(3)]
        hold = await busy.say("hold the only place")
        await engine.until_started(1)
        low_turn = await low.say("background chatter")  # priority 0, first in line
        await engine.until_waiting(1)
        high_turn = await high.say("the player's line", params={"priority": 5})
        await engine.until_waiting(2)
        await busy.cancel()
        assert (await hold.result()).reason == "cancelled"
        engine.run_freely()
        r_low, r_high = await low_turn.result(), await high_turn.result()
    assert (r_low.reason, r_high.reason) == ("stop", "stop")
    # First come, first served would start `low` first; priority starts `high` first, and `low` after it ends.
    assert engine.events == [
        ("start", "hold the only place"),
        ("wait", "background chatter"),
        ("wait", "the player's line"),
        ("end", "hold the only place"),
        ("start", "the player's line"),
        ("end", "the player's line"),
        ("start", "background chatter"),
        ("end", "background chatter"),
    ]


async def test_busy_is_answered_at_once_when_the_queue_is_full(serve):
    srv = await serve(slots=1, max_queued_turns=1)
    engine = srv.engine
    async with Client(srv.url) as c:
        a, b, x = [await c.open_session() for _ in range(3)]
        first = await a.say("one")  # runs, and keeps running: it is not stepped
        second = await b.say("two")  # waits for the only place
        with pytest.raises(RtClientError) as info:
            await x.say("three")
        assert info.value.code == "busy" and info.value.retry_after >= 1
        await engine.until_waiting(1)
        engine.run_freely()
        r1, r2 = await first.result(), await second.result()
        assert (r1.reason, r2.reason) == ("stop", "stop")
        assert (await (await x.say("now")).result()).reason == "stop"  # room again: admitted
    # "three" never reached the engine; "two" waited for "one" to end.
    assert engine.events == [
        ("start", "one"),
        ("wait", "two"),
        ("end", "one"),
        ("start", "two"),
        ("end", "two"),
        ("start", "now"),
        ("end", "now"),
    ]


async def test_say_while_running_is_refused_then_interrupt_cancels(serve):
    srv = await serve()
    engine = srv.engine
    async with Client(srv.url) as c:
        s = await c.open_session()
        first = await s.say("long one")
        await engine.until_started(1)
        engine.step(2)
        assert await pieces(first, 2) == ["You", " said:"]
        with pytest.raises(RtClientError) as info:
            await s.say("me too")
        assert info.value.code == "turn_running"
        second = await s.say("stop, listen", interrupt=True)
        r1 = await first.result()
        assert (r1.reason, r1.text, r1.usage["completion"]) == ("cancelled", "You said:", 2)
        engine.finish()
        r2 = await second.result()
        assert r2.reason == "stop" and r2.text.startswith("You said: stop, listen.")
    # The interrupted turn ended before the new one started: "me too" never reached the engine.
    assert engine.events == [
        ("start", "long one"),
        ("end", "long one"),
        ("start", "stop, listen"),
        ("end", "stop, listen"),
    ]


async def test_cancel_stops_generation(serve):
    srv = await serve()
    engine = srv.engine
    r = await Raw.connect(srv.url)
    await r.open()
    await r.send({"t": "say", "text": "x", "params": {"max_tokens": 200}})
    await engine.until_started(1)
    engine.step(3)
    for _ in range(3):
        await r.until("delta")
    await r.send({"t": "cancel", "id": "c"})
    end, _ = await r.until("turn.end")
    assert end["reason"] == "cancelled" and end["usage"]["completion"] == 3
    await r.send({"t": "say", "text": "y"})
    await engine.until_started(2)
    engine.finish()  # steps every running turn: a cancelled generation that kept going would take tokens too
    end2, _ = await r.until("turn.end")
    assert end2["usage"]["completion"] == 15
    assert [t.reason for t in engine.seen] == ["cancelled", "stop"] and engine.generated_tokens == 3 + 15
    await r.send({"t": "cancel", "id": "again"})
    err, _ = await r.until("error")
    assert (err["code"], err["id"]) == ("no_turn", "again")
