"""The Redis store's fencing, on a real ``redis-server``: two nodes' stores, driven directly."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from rtserver.errors import Fenced
from rtserver.fleet.store import RedisStore
from rtserver.sessions.history import TurnNode
from rtserver.sessions.store import OwnedElsewhere, SessionData


def store(url: str, node: str, alive: set[str]) -> RedisStore:
    s = RedisStore(aioredis.from_url(url), node, frame_log=64, frame_log_ttl=600, session_ttl=0)

    async def is_alive(owner: str) -> bool:
        return owner in alive

    s.alive = is_alive
    return s


async def test_a_stale_owner_cannot_overwrite_the_new_owner(redis_server):
    alive = {"a", "b"}
    a, b = store(redis_server.url, "a", alive), store(redis_server.url, "b", alive)
    await a.create(SessionData("s1", "persona", {}, "default"), 1, "ep1")
    await a.save_turn("s1", 1, TurnNode(1, 0, "say", "hi", "hello", "stop"))
    with pytest.raises(OwnedElsewhere) as elsewhere:  # A's lease lives: B relays to A rather than take it
        await b.load("s1")
    assert elsewhere.value.owner == "a"
    alive.discard("a")  # A stops renewing (a pause, a partition): its lease runs out
    taken = await b.load("s1")
    assert taken is not None and taken.gen == 2 and taken.log is not None and taken.log.epoch != "ep1"
    assert [n.user for n in taken.data.history.path()] == ["hi"]
    with pytest.raises(Fenced):  # A wakes up and writes as if it still owned the session
        await a.save_turn("s1", 1, TurnNode(2, 1, "say", "late", "stale", "stop"))
    with pytest.raises(Fenced):
        await a.delete("s1", 1)
    assert a.fenced_writes == 2
    await b.save_turn("s1", taken.gen, TurnNode(2, 1, "say", "new owner", "fresh", "stop"))
    again = await b.load("s1")
    assert again is not None and again.data.history.nodes[2].user == "new owner"
    for s in (a, b):
        await s.redis.aclose()


async def test_a_clean_release_keeps_the_epoch_and_frames_for_the_next_owner(redis_server):
    alive = {"a", "b"}
    a, b = store(redis_server.url, "a", alive), store(redis_server.url, "b", alive)
    a.frames.start()
    data = SessionData("s2", None, {"seed": 3}, "default")
    await a.create(data, 1, "ep2")
    for seq in (1, 2, 3):
        a.frames.add("s2", 1, "ep2", seq, 100.0 + seq, f"frame {seq}".encode())
    from rtserver.sessions.store import FrameLogState

    await a.park("s2", 1, data, 32, FrameLogState("ep2", 3, [], 103.0))
    taken = await b.load("s2")
    assert taken is not None and taken.log is not None
    assert (taken.log.epoch, taken.log.last_seq, taken.log.frames) == ("ep2", 3, [b"frame 1", b"frame 2", b"frame 3"])
    assert taken.data.params == {"seed": 3}
    await a.close()
    for s in (a, b):
        await s.redis.aclose()
