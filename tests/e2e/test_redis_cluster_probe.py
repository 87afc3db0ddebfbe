"""What the Redis session store needs, probed on a real single redis-server and on a local 3-master Redis
Cluster with redis-py's asyncio clients, through rtserver.redis_compat. Every key of a session shares one hash
tag (``rt:{sid}:...``) so each script, read and pipeline touches one slot; sharded pub/sub channels share it too.

Where the two differ, the test says which way each goes (a redis-py upgrade that changes it fails here)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeout

from rtserver.redis_compat import Client, connect, load_scripts, sharded_subscribe

S, F, M, CH = "rt:{abc}:s", "rt:{abc}:f", "rt:{abc}:m", "rt:{abc}:c"  # session, frames, lease meta, channel
# Other tags, whose slots the 3-master cluster serves on the two other nodes ({abc}: 7638, {b}: 3300, {d}: 11298).
OTHER, THIRD = "rt:{b}:c", "rt:{d}:c"

# One write of an owner: fenced by the lease generation, the frame numbered by the session's seq, the log kept
# bounded, the frame published to the session's channel. KEYS: session, frames, meta; ARGV: gen, frame, channel,
# maxlen.
WRITE = """
local gen = redis.call('HGET', KEYS[3], 'gen')
if gen and gen ~= ARGV[1] then return redis.error_reply('FENCED lease generation ' .. gen) end
redis.call('HSET', KEYS[3], 'gen', ARGV[1])
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('XADD', KEYS[2], seq .. '-0', 'frame', ARGV[2])
redis.call('XTRIM', KEYS[2], 'MAXLEN', ARGV[4])
redis.call('SPUBLISH', ARGV[3], ARGV[2])
return seq
"""

LIBRARY = (
    """#!lua name=rtprobe
redis.register_function('rt_write', function(keys, args)
"""
    + WRITE.replace("KEYS", "keys").replace("ARGV", "args")
    + "end)\n"
)


@pytest.fixture(params=["single", "cluster"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    server = request.getfixturevalue("redis_server" if request.param == "single" else "redis_cluster")
    c = await connect(server.url, call_s=2.0)
    yield c
    await c.aclose()


def is_cluster(c: Client) -> bool:
    return isinstance(c, RedisCluster)


async def test_connect_tells_a_cluster_by_asking_the_server(client: Client, request: pytest.FixtureRequest) -> None:
    assert is_cluster(client) == ("cluster" in request.node.callspec.id)
    assert isinstance(client, RedisCluster | Redis)
    assert await client.ping()


async def test_fenced_write_script_on_one_hash_tag(client: Client) -> None:
    sub = await sharded_subscribe(client, CH)
    write = client.register_script(WRITE)
    assert [await write(keys=[S, F, M], args=["7", f"d{i}", CH, 3]) for i in range(1, 5)] == [1, 2, 3, 4]
    # XRANGE: the frame log numbered by seq and bounded to its last 3.
    assert await client.xrange(F, "-", "+") == [(b"2-0", {b"frame": b"d2"}), (b"3-0", {b"frame": b"d3"}),
                                                (b"4-0", {b"frame": b"d4"})]  # fmt: skip
    assert await client.xrange(F, "3-0", "+", count=1) == [(b"3-0", {b"frame": b"d3"})]
    assert await client.hget(M, "gen") == b"7"
    # A stale owner's write is refused inside the script, and nothing of it is applied.
    with pytest.raises(ResponseError, match="FENCED"):
        await write(keys=[S, F, M], args=["6", "stale", CH, 3])
    assert await client.hget(S, "seq") == b"4"
    # The channel must share the keys' hash tag: a cluster refuses a script's SPUBLISH to another node's slot, and
    # only when it gets there: the script's writes before it stay (scripts do not roll back).
    if is_cluster(client):
        with pytest.raises(ResponseError, match="non local key"):
            await write(keys=[S, F, M], args=["7", "lost", OTHER, 3])
        assert await client.xrange(F, "5-0", "+") == [(b"5-0", {b"frame": b"lost"})]
    # Every SPUBLISH from the script reached the subscriber, in order.
    assert [await sub.get(wait_s=5) for _ in range(4)] == [(CH.encode(), f"d{i}".encode()) for i in range(1, 5)]
    # A node that lost its scripts (a restart, a failover): redis-py's Script loads it again on NOSCRIPT.
    await client.script_flush()
    after = int(await client.hget(S, "seq") or 0)
    assert await write(keys=[S, F, M], args=["7", "next", CH, 3]) == after + 1
    await sub.aclose()


async def test_fcall_of_a_library_on_every_primary(client: Client) -> None:
    loaded = await client.function_load(LIBRARY, replace=True)
    # In a cluster FUNCTION LOAD goes to every primary: one answer per node.
    assert (set(loaded.values()) if is_cluster(client) else {loaded}) == {b"rtprobe"}
    sub = await sharded_subscribe(client, CH)
    assert await client.fcall("rt_write", 3, S, F, M, "1", "f1", CH, 10) == 1
    assert await client.fcall("rt_write", 3, S, F, M, "1", "f2", CH, 10) == 2
    assert await client.xrange(F, "-", "+") == [(b"1-0", {b"frame": b"f1"}), (b"2-0", {b"frame": b"f2"})]
    assert await sub.get(wait_s=5) == (CH.encode(), b"f1")
    await sub.aclose()


async def test_xread_block_wakes_on_xadd(client: Client, request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue("redis_server" if not is_cluster(client) else "redis_cluster")
    last = await client.xadd(F, {"frame": "a"})
    reader = await connect(server.url, call_s=2.0, block_s=5.0, cluster=is_cluster(client))
    # From the last id seen, not "$": whichever runs first, the read returns the entry added after it.
    read = asyncio.create_task(reader.xread({F: last}, block=5000))
    added = await client.xadd(F, {"frame": "b"})
    assert await read == [[F.encode(), [(added, {b"frame": b"b"})]]]
    await reader.aclose()
    # A socket timeout shorter than the block fails the read: blocking reads need their own client.
    short = await connect(server.url, call_s=0.2, cluster=is_cluster(client))
    with pytest.raises(RedisTimeout):
        await short.xread({F: added}, block=2000)
    await short.aclose()


async def test_a_silent_node_fails_the_call_at_once_and_the_next_call_finds_it_back(
    client: Client, request: pytest.FixtureRequest
) -> None:
    # redis-py's own retries are off (its cluster client's default, 10 with backoff, holds a call ~6 s against a
    # node that does not answer, whatever the socket timeout): the store's retry policy decides instead.
    retry = client.retry if isinstance(client, RedisCluster) else client.get_retry()
    assert retry is not None and retry.get_retries() == 0
    server = request.getfixturevalue("redis_server" if not is_cluster(client) else "redis_cluster")
    short = await connect(server.url, call_s=0.3, cluster=is_cluster(client))
    await short.set("rt:{abc}:x", "1")
    owner = server
    if isinstance(short, RedisCluster):
        port = short.get_node_from_key("rt:{abc}:x").port
        owner = next(n for n in server.nodes if n.port == port)
    owner.proc.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(RedisTimeout):
            await short.get("rt:{abc}:x")
    finally:
        owner.proc.send_signal(signal.SIGCONT)
    assert await short.get("rt:{abc}:x") == b"1"
    await short.aclose()


async def test_lease_with_set_nx_px(client: Client) -> None:
    assert await client.set("rt:{abc}:lease", "node1:7", nx=True, px=3000) is True
    assert await client.set("rt:{abc}:lease", "node2:8", nx=True, px=3000) is None
    assert await client.get("rt:{abc}:lease") == b"node1:7"
    assert 0 < await client.pttl("rt:{abc}:lease") <= 3000


async def test_pipelines(client: Client) -> None:
    await client.hset(S, "seq", 4)
    p = client.pipeline(transaction=False)
    p.hget(S, "seq").xlen(F).set("rt:{abc}:lease", "n1", nx=True, px=3000).get("rt:{xyz}:s")  # the last: another slot
    assert await p.execute() == [b"4", 0, True, None]
    async with client.pipeline(transaction=True) as tx:  # MULTI/EXEC on one slot works in a cluster too
        tx.hincrby(S, "seq", 1).xadd(F, {"frame": "x"}, id="5-0")
        assert await tx.execute() == [5, b"5-0"]
    write = client.register_script(WRITE)

    async def scripted() -> list[object]:
        p = client.pipeline(transaction=False)
        for i in (1, 2):
            await write(keys=[S, F, M], args=["1", f"p{i}", CH, 10], client=p)
        return await p.execute()

    await client.script_flush()
    if is_cluster(client):  # redis-py's cluster pipeline does not load a missing script ...
        with pytest.raises(NoScriptError):
            await scripted()
        await load_scripts(client, write)  # ... so the store loads its scripts first
        assert await scripted() == [6, 7]  # the failed EVALSHAs changed nothing
    else:  # the single-server pipeline loads it
        assert await scripted() == [6, 7]


async def test_sharded_pubsub_across_slots(client: Client) -> None:
    sub = await sharded_subscribe(client, CH, OTHER, THIRD)
    # Confirmed by Redis before sharded_subscribe returned: these are not lost to a subscription still on its way.
    for channel in (CH, OTHER, THIRD):
        assert await client.spublish(channel, channel) == 1
    got = {await sub.get(wait_s=5) for _ in range(3)}
    assert got == {(c.encode(), c.encode()) for c in (CH, OTHER, THIRD)}
    await sub.remove(OTHER)
    assert await client.spublish(OTHER, "gone") == 0  # confirmed: no subscriber left on that channel
    await sub.add("rt:{abc}:c2")
    await client.spublish("rt:{abc}:c2", "three")
    assert await sub.get(wait_s=5) == (b"rt:{abc}:c2", b"three")
    assert await sub.get(wait_s=0.05) is None
    await sub.aclose()


async def test_kill_9_and_restart_keeps_every_acknowledged_write(
    client: Client, request: pytest.FixtureRequest
) -> None:
    # appendonly yes + appendfsync always: what Redis acknowledged is on disk, on every node of the cluster.
    server = request.getfixturevalue("redis_server" if not is_cluster(client) else "redis_cluster")
    tags = ["abc", "b", "d"]  # one per node of the cluster
    for t in tags:
        await client.xadd(f"rt:{{{t}}}:f", {"frame": t}, id="1-0")
    server.stop(kill=True)
    server.start()  # same ports and data; a cluster is back once every node says cluster_state:ok
    again = await connect(server.url, call_s=2.0, cluster=is_cluster(client))
    for t in tags:
        assert await again.xrange(f"rt:{{{t}}}:f") == [(b"1-0", {b"frame": t.encode()})]
    await again.aclose()
