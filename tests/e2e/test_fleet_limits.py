"""Limits that span nodes, on real ``rtserver serve`` nodes sharing a real Redis and a local 3-master Redis
Cluster: connections per client IP and stored sessions per user are one count for the whole fleet."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from rtserver.auth.tokens import mint

from ..helpers import Raw

SECRET = "fleet-secret"


@pytest.fixture(params=["single", "cluster"])
def redis_url(request):  # type: ignore[no-untyped-def]
    return request.getfixturevalue("redis_cluster" if request.param == "cluster" else "redis_server").url


def nodes(start_server: Any, redis_url: str, env: dict[str, str]) -> list[Any]:
    # A generous Redis timeout: a node's first calls on a busy machine must not be taken for an outage (which
    # fails open, by policy), since these tests are about what Redis decides.
    env = {"RTSERVER_REDIS_TIMEOUT": "5", **env}
    return [
        start_server("--engine", "scripted", "--redis", redis_url, "--node-id", name, env=env)
        for name in ("node-a", "node-b")
    ]


def via(ip: str) -> dict[str, dict[str, str]]:
    return {"additional_headers": {"X-Forwarded-For": ip}}


async def counted(url: str, ip: str) -> Raw:
    """A connection that has not said hello, once its node has counted it in Redis: a node counts a connection
    after the handshake and reads its frames only after that, so the pong says it is done."""
    r = await Raw.connect(url, hello=False, **via(ip))
    await r.send({"t": "ping", "id": "counted"})
    assert (await r.recv())["t"] == "pong"
    return r


async def test_connections_that_have_not_said_hello_are_counted_across_nodes(redis_url, start_server):
    a, b = nodes(start_server, redis_url, {"RTSERVER_TRUSTED_PROXIES": "127.0.0.1", "RTSERVER_PENDING_PER_IP": "3"})
    first = await counted(a.url, "10.0.0.1")
    await counted(a.url, "10.0.0.1")
    await counted(b.url, "10.0.0.1")  # three pending for 10.0.0.1, on two nodes
    over = await Raw.connect(b.url, hello=False, **via("10.0.0.1"))  # node b alone holds one: it gets past 429
    async with asyncio.timeout(60):
        await over.ws.wait_closed()
    assert over.ws.close_code == 1013  # but not past the count across the nodes
    other = await Raw.connect(b.url, hello=False, **via("10.0.0.2"))
    await other.send({"t": "hello"})
    assert (await other.recv())["t"] == "welcome"  # another address is not held back
    await first.send({"t": "hello"})
    assert (await first.recv())["t"] == "welcome"  # one pending place free, everywhere
    await counted(b.url, "10.0.0.1")  # and this one takes it


async def player(url: str, user: str) -> Raw:
    r = await Raw.connect(url, hello=False)
    await r.send({"t": "hello", "token": mint(SECRET, user, 600, now=time.time())})
    assert (await r.recv())["t"] == "welcome"
    return r


async def refused_open(r: Raw) -> str:
    await r.send({"t": "session.open", "id": "over"})
    f = await r.recv()
    assert f["t"] == "error" and f["id"] == "over"
    return str(f["code"])


async def test_stored_sessions_per_user_are_counted_across_nodes(redis_url, start_server):
    env = {"RTSERVER_AUTH": "on", "RTSERVER_TOKEN_SECRET": SECRET, "RTSERVER_STORED_SESSIONS_PER_USER": "3"}
    a, b = nodes(start_server, redis_url, env)
    on_a, on_b = await player(a.url, "ann"), await player(b.url, "ann")
    first = (await on_a.open())["sid"]
    await on_a.open()
    await on_b.open()
    assert await refused_open(on_a) == "session_quota"  # 2 here and 1 there: 3 in all
    assert await refused_open(on_b) == "session_quota"
    bob = await player(b.url, "bob")
    assert (await bob.open())["t"] == "session"  # the quota is ann's, not the fleet's
    await on_b.send({"t": "session.delete", "sid": first})  # node a's session, deleted through node b
    await on_b.until("session.closed")  # the owner's last frame reaches a client on another node
    assert (await on_a.open())["t"] == "session"  # its place came free on every node
    assert await refused_open(on_b) == "session_quota"


async def test_open_sessions_per_user_are_counted_across_nodes(redis_url, start_server):
    env = {"RTSERVER_AUTH": "on", "RTSERVER_TOKEN_SECRET": SECRET, "RTSERVER_SESSIONS_PER_USER": "2"}
    a, b = nodes(start_server, redis_url, env)
    on_a, on_b = await player(a.url, "ann"), await player(b.url, "ann")
    first = (await on_a.open())["sid"]
    await on_b.open()
    assert await refused_open(on_a) == "too_many_sessions"  # one here and one there: 2 open in all
    assert await refused_open(on_b) == "too_many_sessions"
    bob = await player(a.url, "bob")
    assert (await bob.open())["t"] == "session"  # the limit is ann's, not the fleet's
    await on_a.send({"t": "session.close", "sid": first})
    await on_a.until("session.closed")
    await on_a.send({"t": "ping", "id": "after"})  # handled once the close is done, the free place told to Redis
    await on_a.until("pong")
    assert (await on_b.open())["t"] == "session"  # the place came free for every node
    assert await refused_open(on_a) == "too_many_sessions"
