"""The reply cache on real servers: `rtserver serve` subprocesses (scripted engine), one real redis-server shared
by several nodes. What a test counts is the servers' own counters (/metrics), never time."""

from __future__ import annotations

import asyncio
import re

import pytest
from rtclient import Client

from ..conftest import SCRIPTED
from ..helpers import http_get

PERSONA = "You are Bram, a gruff blacksmith."
GREEDY = {"temperature": 0}


async def counter(server, name: str) -> float:
    body = (await http_get(f"{server.http}/metrics")).decode()
    m = re.search(rf"^{name} ([0-9.e+]+)$", body, re.M)
    assert m is not None, f"{name} not in /metrics"
    return float(m.group(1))


async def generations(*servers) -> float:
    return sum([await counter(s, "rtserver_generations_total") for s in servers])


async def ask(url: str, text: str, *, persona: str = PERSONA, params=None, turn_params=None):
    async with Client(url) as c:
        s = await c.open_session(persona=persona, params=params if params is not None else GREEDY)
        return await (await s.say(text, params=turn_params)).result()


# A loaded CI machine may answer slower than the default redis_timeout (0.5 s), which would turn Redis off and
# make a node generate on its own: a count of generations must not depend on that.
PATIENT = {"RTSERVER_REDIS_TIMEOUT": "5"}


@pytest.fixture(params=["single", "cluster"])
def shared_redis(request):  # type: ignore[no-untyped-def]
    """A single redis-server, and a local 3-master Redis Cluster: the cache's keys share one slot per reply."""
    return request.getfixturevalue("redis_cluster" if request.param == "cluster" else "redis_server")


def redis_args(redis_server) -> tuple[str, ...]:
    return (*SCRIPTED, "--scripted-rate", "200", "--redis", redis_server.url)


async def test_a_repeated_deterministic_turn_is_a_hit_and_saved_like_a_generated_one(scripted_server):
    first = await ask(scripted_server.url, "Any work?")
    async with Client(scripted_server.url) as c:
        s = await c.open_session(persona=PERSONA, params=GREEDY)
        turn = await s.say("Any work?")
        pieces = [p async for p in turn]
        again = await turn.result()
        attached = await c.attach(s.sid)
    assert (first.cache, again.cache) == ("miss", "hit")
    assert again.text == first.text == "".join(pieces) and len(pieces) == 3 + 12  # delta by delta, as it streamed
    assert again.reason == "stop" and again.usage["completion"] == 0  # nothing computed for it
    assert [t["reply"] for t in attached.snapshot["turns"]] == [first.text]  # in the history as any turn
    assert await generations(scripted_server) == 1
    assert await counter(scripted_server, "rtserver_cache_hits_total") == 1


async def test_a_non_deterministic_turn_is_not_cached_unless_the_session_opts_in(scripted_server):
    sampled = {"temperature": 0.8}
    a = await ask(scripted_server.url, "Hello", params=sampled)
    b = await ask(scripted_server.url, "Hello", params=sampled)
    assert (a.cache, b.cache) == ("miss", "miss")
    assert await generations(scripted_server) == 2
    opted = {"temperature": 0.8, "cache": True}
    c = await ask(scripted_server.url, "Hello", params=opted)
    d = await ask(scripted_server.url, "Hello", params=opted)
    assert (c.cache, d.cache) == ("miss", "hit") and d.text == c.text
    assert await generations(scripted_server) == 3


async def test_regenerate_is_never_answered_from_the_cache(scripted_server):
    async with Client(scripted_server.url) as c:
        s = await c.open_session(persona=PERSONA, params={"seed": 4})
        said = await (await s.say("Tell me a story")).result()
        other = await ask(scripted_server.url, "Tell me a story", params={"seed": 4})
        regenerated = await (await s.regenerate()).result()
    assert other.cache == "hit" and other.text == said.text  # the same turn from another session: cached
    assert regenerated.cache == "miss" and regenerated.usage["completion"] > 0
    assert await generations(scripted_server) == 2


async def test_params_cache_false_bypasses_the_cache_for_a_turn(scripted_server):
    await ask(scripted_server.url, "Hello")
    bypassed = await ask(scripted_server.url, "Hello", turn_params={"cache": False})
    assert bypassed.cache == "miss" and bypassed.usage["completion"] > 0
    assert await generations(scripted_server) == 2
    assert (await ask(scripted_server.url, "Hello")).cache == "hit"


async def test_a_reply_generated_on_node_a_is_a_hit_on_node_b(shared_redis, start_server, tmp_path):
    a = start_server(*redis_args(shared_redis), data_dir=tmp_path / "a", env=PATIENT)
    b = start_server(*redis_args(shared_redis), data_dir=tmp_path / "b", env=PATIENT)
    on_a = await ask(a.url, "Where is the forge?")
    on_b = await ask(b.url, "Where is the forge?")
    assert (on_a.cache, on_b.cache) == ("miss", "hit") and on_b.text == on_a.text
    assert (await counter(a, "rtserver_generations_total"), await counter(b, "rtserver_generations_total")) == (1, 0)
    assert (await ask(b.url, "Where is the forge?", persona="You are Ada.")).cache == "miss"  # another persona


async def test_identical_turns_in_flight_on_three_nodes_cause_one_generation(shared_redis, start_server, tmp_path):
    # Slow tokens keep the first generation in flight while the others arrive (it is not needed for the count:
    # a turn arriving after it ended is a plain hit, and still no generation).
    nodes = [
        start_server(
            *SCRIPTED, "--scripted-rate", "20", "--redis", shared_redis.url, data_dir=tmp_path / f"n{i}", env=PATIENT
        )
        for i in range(3)
    ]
    clients = [await Client(n.url).__aenter__() for n in nodes]
    try:
        sessions = [await clients[i % 3].open_session(persona=PERSONA, params=GREEDY) for i in range(20)]
        turns = await asyncio.gather(*(s.say("What do you sell?") for s in sessions))
        results = await asyncio.gather(*(t.result() for t in turns))
    finally:
        for c in clients:
            await c.close()
    assert {r.reason for r in results} == {"stop"} and len({r.text for r in results}) == 1
    assert await generations(*nodes) == 1
    assert sorted(r.cache for r in results) == ["hit"] * 19 + ["miss"]
    coalesced = sum([await counter(n, "rtserver_cache_coalesced_total") for n in nodes])
    hits = sum([await counter(n, "rtserver_cache_hits_total") for n in nodes])
    assert hits == 19 and coalesced <= 19


async def test_with_redis_stopped_turns_still_succeed_on_the_local_cache(start_server, redis_server, tmp_path):
    node = start_server(*redis_args(redis_server), data_dir=tmp_path / "n")
    async with Client(node.url) as c:
        # Sessions held by this node before Redis stops go on (their turns journalled locally, ADR 0007); new
        # sessions need Redis, so the three that ask after it stopped are opened first.
        sessions = [await c.open_session(persona=PERSONA, params=GREEDY) for _ in range(4)]
        assert (await (await sessions[0].say("Before")).result()).cache == "miss"
        redis_server.stop()
        results = [await (await s.say("After")).result() for s in sessions[1:]]
    assert [r.reason for r in results] == ["stop"] * 3
    assert [r.cache for r in results] == ["miss", "hit", "hit"]  # the in-process tier still answers
    assert await counter(node, "rtserver_cache_redis_degraded") == 1
    assert await generations(node) == 2


@pytest.mark.model
async def test_the_bundled_model_answers_a_repeated_greedy_turn_from_the_cache(start_server, bundled_model, tmp_path):
    srv = start_server("--model", str(bundled_model), "--slots", "2", "--n-ctx", "512")
    params = {"temperature": 0, "max_tokens": 24}
    first = await ask(srv.url, "Hello, who are you?", params=params)
    second = await ask(srv.url, "Hello, who are you?", params=params)
    assert first.cache == "miss" and first.usage["completion"] > 0
    assert second.cache == "hit" and second.text == first.text and second.usage["completion"] == 0
    assert await generations(srv) == 1


async def test_a_reply_longer_than_the_wait_bound_still_causes_one_generation(start_server, redis_server, tmp_path):
    # 15 tokens at 4/s take about 3.7 s, more than twice cache_wait: without the leader's beats (every third of
    # cache_wait) node B would stop waiting and generate the line itself.
    args = (*SCRIPTED, "--scripted-rate", "4", "--redis", redis_server.url)
    env = {"RTSERVER_CACHE_WAIT": "1.5", **PATIENT}
    a = start_server(*args, data_dir=tmp_path / "a", env=env)
    b = start_server(*args, data_dir=tmp_path / "b", env=env)
    async with Client(a.url) as ca, Client(b.url) as cb:
        sa = await ca.open_session(persona=PERSONA, params=GREEDY)
        sb = await cb.open_session(persona=PERSONA, params=GREEDY)
        leading = await sa.say("A long tale, please")
        await leading.__aiter__().__anext__()  # node A holds the line's lock: it is generating
        following = await sb.say("A long tale, please")
        r_a, r_b = await leading.result(), await following.result()
    assert (r_a.cache, r_b.cache) == ("miss", "hit") and r_b.text == r_a.text
    assert await generations(a, b) == 1
    assert await counter(b, "rtserver_cache_coalesced_total") == 1
