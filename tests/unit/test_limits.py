"""GCRA in process and in a real Redis, with the clock injected: counts are exact, never timed."""

from __future__ import annotations

import asyncio
import time

import pytest

from rtserver.limits import Gcra, Limit, SharedLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def admitted(g: Gcra, limits: list[Limit], n: int) -> int:
    return sum(g.take(limits).allowed for _ in range(n))


def test_a_burst_admits_exactly_the_limit_then_one_per_interval():
    clock = Clock()
    g = Gcra(clock)
    lim = [Limit("u", 60)]
    assert admitted(g, lim, 100) == 60
    refused = g.take(lim)
    assert not refused.allowed and refused.retry_after == pytest.approx(1.0)
    clock.now += 2.5
    assert admitted(g, lim, 10) == 2


def test_several_keys_are_decided_together_all_or_nothing():
    clock = Clock()
    g = Gcra(clock)
    user, ip = Limit("u", 10), Limit("ip", 1000)
    assert admitted(g, [user, ip], 50) == 10
    assert admitted(g, [ip], 2000) == 1000 - 10  # the user's refused frames did not count against the IP


def test_a_refund_gives_back_what_was_reserved_but_never_before_now():
    clock = Clock()
    g = Gcra(clock)
    assert g.take([Limit("t", 100, 80)]).allowed
    assert not g.take([Limit("t", 100, 80)]).allowed
    g.refund(Limit("t", 100, 70))  # the turn generated 10 of its 80
    assert g.take([Limit("t", 100, 80)]).allowed
    g.refund(Limit("t", 100, 10_000))
    assert admitted(g, [Limit("t", 100)], 500) == 100  # a refund never makes more than a full burst


@pytest.fixture(params=["single", "cluster"])
def redis_url(request):  # type: ignore[no-untyped-def]
    """A single redis-server, and a local 3-master Redis Cluster: the same limits must hold on both."""
    return request.getfixturevalue("redis_cluster" if request.param == "cluster" else "redis_server")


def is_cluster(backend: object) -> bool:
    return type(backend).__name__ == "RedisClusterProc"


def node(backend: object, clock: Clock, timeout: float = 0.5, **kw: object) -> SharedLimiter:
    from rtserver.protection import redis_for_limits

    cluster = is_cluster(backend)
    client = redis_for_limits(backend.url, timeout, cluster=cluster)  # type: ignore[attr-defined]
    return SharedLimiter(client, Gcra(clock), timeout=timeout, clock=clock, cluster=cluster, **kw)  # type: ignore[arg-type]


async def test_three_nodes_sharing_redis_enforce_one_limit(redis_url):
    clock = Clock()
    nodes = [node(redis_url, clock, timeout=30.0) for _ in range(3)]  # a burst queues: no timeout here
    lim = [Limit("user:ann", 1000)]
    burst = [n.take(lim) for n in nodes for _ in range(600)]  # 1,800 requests at once, 600 through each node
    results = await asyncio.gather(*burst)
    assert sum(d.allowed for d in results) == 1000  # one limit, not three (the issue allows 1 %; it is exact)
    clock.now += 6.0  # 6 s later: 100 more
    results = await asyncio.gather(*[n.take(lim) for n in nodes for _ in range(100)])
    assert sum(d.allowed for d in results) == 100
    for n in nodes:
        await n.redis.aclose()


async def test_a_users_and_an_ips_limit_are_taken_all_or_nothing_in_redis(redis_url):
    clock = Clock()
    n = node(redis_url, clock)
    both = [Limit("user:ann", 10), Limit("ip:10.0.0.1", 5)]  # on a cluster: two slots, two scripts
    assert [(await n.take(both)).allowed for _ in range(6)] == [True] * 5 + [False]
    refused = await n.take(both)
    assert not refused.allowed and refused.retry_after == pytest.approx(12.0)  # the IP's next place: 60 / 5 s
    alone = [(await n.take([Limit("user:ann", 10)])).allowed for _ in range(6)]
    assert alone == [True] * 5 + [False]  # the refused requests took nothing from ann: 5 places left, not fewer
    await n.redis.aclose()


async def test_a_refund_in_redis(redis_url):
    clock = Clock()
    n = node(redis_url, clock)
    assert (await n.take([Limit("t", 100, 90)])).allowed
    assert not (await n.take([Limit("t", 100, 20)])).allowed
    await n.refund(Limit("t", 100, 80))
    assert (await n.take([Limit("t", 100, 20)])).allowed
    await n.redis.aclose()


@pytest.mark.parametrize("redis_url", ["single"], indirect=True)
@pytest.mark.parametrize("fail_open", [True, False])
async def test_redis_down_fails_open_or_closed_and_nothing_hangs(redis_url, fail_open: bool):
    clock = Clock()
    n = node(redis_url, clock, fail_open=fail_open)
    assert (await n.take([Limit("u", 5)])).allowed
    redis_url.stop()
    async with asyncio.timeout(10):  # a bound against a hang (the limiter's own bound is 0.5 s)
        first = await n.take([Limit("u", 5)])
        rest = [await n.take([Limit("u", 5)]) for _ in range(10)]  # within the back-off: Redis is not asked
    assert n.failures == 1
    if fail_open:  # this node's own limit: 5 a minute, counted from the outage
        assert first.allowed and sum(d.allowed for d in rest) == 4
    else:
        assert not first.allowed and first.retry_after == 1.0 and not any(d.allowed for d in rest)
    await n.redis.aclose()


async def test_shared_counts_sum_live_nodes_and_drop_dead_ones(redis_url):
    from rtserver.limits.counts import NODES, SharedCounts, key
    from rtserver.protection import redis_for_limits

    client = redis_for_limits(redis_url.url, 5.0, cluster=is_cluster(redis_url))
    x, y, z = (SharedCounts(client, name, timeout=5.0) for name in "xyz")
    await x.heartbeat()
    await y.heartbeat()
    assert await x.acquire([("c:1.2.3.4", 3, 4)])
    assert await y.acquire([("c:1.2.3.4", 1, 4)])  # 3 + 1: at the limit
    assert await y.acquire([("c:1.2.3.4", 2, 4)]) is False  # 3 + 2 > 4
    await z.heartbeat()  # z starts: y has not looked since, and counts it all the same
    assert await z.acquire([("c:1.2.3.4", 1, 5)])  # 3 + 1 + 1
    assert await y.acquire([("c:1.2.3.4", 2, 5)]) is False  # 3 + 2 + z's 1 > 5
    await client.zadd(NODES, {"x": int(time.time() * 1000) - 10_000})  # x died: its heartbeat lapsed 10 s ago
    assert await y.acquire([("c:1.2.3.4", 2, 5)]) is False  # y has not looked since: x's 3 still count
    await y.heartbeat()
    assert await y.acquire([("c:1.2.3.4", 2, 5)])  # 2 + z's 1: x's connections no longer count
    fields = await client.hgetall(key("c:1.2.3.4"))
    assert {k: v.split(b":")[0] for k, v in fields.items()} == {b"y": b"2", b"z": b"1"}  # x's field was dropped
    await client.aclose()


async def test_an_older_count_reaching_redis_late_never_overwrites_a_newer_one(redis_url):
    from rtserver.limits.counts import SharedCounts, key
    from rtserver.protection import redis_for_limits

    client = redis_for_limits(redis_url.url, 5.0, cluster=is_cluster(redis_url))
    x = SharedCounts(client, "x", timeout=5.0)
    await x.heartbeat()
    older, newer = x._value(1), x._value(2)  # numbered in the order the node counted them
    assert await x._acquire(keys=[key("c:5.6.7.8")], args=[*x._view(), newer, 9]) == [1, 0]
    assert await x._acquire(keys=[key("c:5.6.7.8")], args=[*x._view(), older, 9]) == [1, 0]  # arrives second
    assert await client.hget(key("c:5.6.7.8"), "x") == newer.encode()
    await x.set("c:5.6.7.8", 0)
    assert (await client.hget(key("c:5.6.7.8"), "x")).startswith(b"0:")
    await client.aclose()
