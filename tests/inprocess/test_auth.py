"""Credentials, Origin and session ownership over real sockets: the real Server in process, auth on."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from rtclient import Client, RtClientError
from websockets.exceptions import InvalidStatus

from rtserver.auth.keys import KeyStore
from rtserver.auth.tokens import mint

from ..helpers import HANG, Raw

SECRET = "test-secret"


def token(user: str, ttl: float = 600, **claims: object) -> str:
    return mint(SECRET, user, ttl, now=time.time(), **claims)


async def protected(serve, data: Path, **settings: object):  # type: ignore[no-untyped-def]
    key = KeyStore(data).create("backend")  # what `rtserver keys create` does
    return await serve(auth="on", token_secret=SECRET, **settings), key


async def hello(url: str, tok: str | None = None, **kw: object) -> tuple[Raw, dict]:
    r = await Raw.connect(url, hello=False, **kw)
    await r.send({"t": "hello", **({"token": tok} if tok is not None else {})})
    return r, await r.recv()


async def closed_with(r: Raw) -> int | None:
    async with asyncio.timeout(HANG):
        await r.ws.wait_closed()
    return r.ws.close_code


async def test_every_credential_path(serve, tmp_path: Path):
    srv, key = await protected(serve, tmp_path / "data")
    for good in (key, token("ann")):
        r, reply = await hello(srv.url, good)
        assert reply["t"] == "welcome"
    r, reply = await hello(srv.url, additional_headers={"Authorization": f"Bearer {key}"})
    assert reply["t"] == "welcome"  # a backend's header instead of hello.token
    bad = {
        "missing": None,
        "expired": token("ann", ttl=-5),
        "wrong signature": mint("another-secret", "ann", 600, now=time.time()),
        "unknown key": key[:-4] + "AAAA",
        "garbage": "not-a-credential",
    }
    for why, cred in bad.items():
        r, reply = await hello(srv.url, cred)
        assert reply["code"] == "unauthenticated", why
        assert await closed_with(r) == 4001, why
    with pytest.raises(InvalidStatus) as info:
        await Raw.connect(srv.url, hello=False, additional_headers={"Authorization": "Bearer nope"})
    assert info.value.response.status_code == 401


async def test_frames_before_hello_get_nothing(serve, tmp_path: Path):
    srv, _ = await protected(serve, tmp_path / "data")
    r = await Raw.connect(srv.url, hello=False)
    await r.send({"t": "session.open", "id": 1})
    assert (await r.recv())["code"] == "not_ready"


async def test_a_revoked_key_closes_its_live_connections_and_is_refused_after(serve, tmp_path: Path):
    srv, key = await protected(serve, tmp_path / "data")
    live, reply = await hello(srv.url, key)
    assert reply["t"] == "welcome"
    kid = key.split("_")[1]
    assert KeyStore(tmp_path / "data").revoke(kid)  # what `rtserver keys revoke` does
    assert await closed_with(live) == 4003
    r, reply = await hello(srv.url, key)
    assert reply["code"] == "forbidden" and await closed_with(r) == 4003


async def test_the_client_calls_its_token_callback_on_every_connect_and_stops_on_4001(serve, tmp_path: Path):
    srv, _ = await protected(serve, tmp_path / "data")
    calls: list[str] = []
    again = asyncio.Event()

    async def fresh() -> str:
        calls.append(token("ann"))
        if len(calls) == 2:
            again.set()
        return calls[-1]

    async with Client(srv.url, token=fresh) as c:
        await c.open_session()
        assert c.ws is not None
        await c.ws.close()  # a dropped connection: the client reconnects, asking for a fresh token
        async with asyncio.timeout(HANG):
            await again.wait()
    with pytest.raises(RtClientError) as info:
        async with Client(srv.url, token=lambda: token("ann", ttl=-1)):
            pass
    assert info.value.code == "unauthenticated"


async def test_origin_not_on_the_allow_list_is_refused_at_the_handshake(serve, tmp_path: Path):
    srv = await serve(allowed_origins="https://game.example, https://studio.example/")
    with pytest.raises(InvalidStatus) as info:
        await Raw.connect(srv.url, origin="https://evil.example")  # type: ignore[arg-type]
    assert info.value.response.status_code == 403
    await Raw.connect(srv.url, origin="https://studio.example")  # type: ignore[arg-type]
    await Raw.connect(srv.url)  # no Origin: not a browser


async def test_a_session_belongs_to_its_user(serve, tmp_path: Path):
    srv, key = await protected(serve, tmp_path / "data")
    ann, _ = await hello(srv.url, token("ann"))
    s = await ann.open()
    sid = s["sid"]
    bob, _ = await hello(srv.url, token("bob"))
    for frame in (
        {"t": "session.open", "sid": sid},
        {"t": "session.open", "sid": sid, "mode": "ro"},  # read-only, but without a grant
        {"t": "session.resume", "sid": sid, "ep": s["ep"], "last_seq": 0},
        {"t": "say", "sid": sid, "text": "mine now"},
        {"t": "session.update", "sid": sid, "persona": "x"},
        {"t": "session.close", "sid": sid},
    ):
        await bob.send({**frame, "id": "b"})
        reply = await bob.recv()
        assert (reply["t"], reply["code"]) == ("error", "forbidden"), frame
    ann2, _ = await hello(srv.url, token("ann"))  # the same user on another device may
    assert (await ann2.open(sid=sid))["sid"] == sid
    backend, _ = await hello(srv.url, key)  # and a trusted backend's API key may
    assert (await backend.open(sid=sid))["sid"] == sid


async def test_a_spectator_grant_is_read_only(serve, tmp_path: Path):
    srv, _ = await protected(serve, tmp_path / "data")
    ann, _ = await hello(srv.url, token("ann"))
    sid = (await ann.open())["sid"]
    eve, _ = await hello(srv.url, token("eve", ro=[sid]))
    got = await eve.open(sid=sid, mode="ro")
    assert got["sid"] == sid
    for frame in (
        {"t": "say", "text": "hi"},
        {"t": "cancel"},
        {"t": "rollback", "tid": 0},
        {"t": "session.update", "persona": "x"},
        {"t": "session.close"},
    ):
        await eve.send({**frame, "sid": sid, "id": "w"})
        reply = await eve.recv()
        assert (reply["t"], reply["code"]) == ("error", "read_only"), frame
    srv.engine.run_freely()
    await ann.send({"t": "say", "sid": sid, "text": "watch this"})
    end, _ = await eve.until("turn.end")  # the spectator sees the owner's turn
    assert end["reason"] == "stop"


async def test_a_tokens_model_claim_bounds_its_sessions(serve, tmp_path: Path):
    srv, _ = await protected(serve, tmp_path / "data")
    r, _ = await hello(srv.url, token("ann", models=["other"]))
    await r.send({"t": "session.open", "id": 1})
    reply = await r.recv()
    assert reply["code"] == "forbidden" and not r.ws.close_code


async def test_loopback_with_nothing_configured_needs_no_credential(serve, tmp_path: Path):
    srv = await serve()
    r, reply = await hello(srv.url)
    assert reply["t"] == "welcome"
    assert not any(e.get("event") == "api_key_created" for e in srv.logs.events)


def test_a_public_bind_with_nothing_configured_creates_and_logs_a_key_once(tmp_path: Path):
    from structlog.testing import capture_logs

    from rtserver.auth import setup

    with capture_logs() as logs:
        a = setup("auto", "0.0.0.0", tmp_path, "")
        b = setup("auto", "0.0.0.0", tmp_path, "")
    created = [e for e in logs if e["event"] == "api_key_created"]
    assert a.required and b.required and len(created) == 1
    assert a.check(str(created[0]["key"])).kind == "key"
    assert str(created[0]["key"]) not in (tmp_path / "keys.json").read_text()  # only its salted hash is kept


async def test_metrics_can_be_put_behind_the_key(serve, tmp_path: Path):
    from ..helpers import http_get

    srv, key = await protected(serve, tmp_path / "data", protect_http=True)
    with pytest.raises(Exception, match="401"):
        await http_get(srv.http + "/metrics")
    import urllib.request

    req = urllib.request.Request(srv.http + "/metrics", headers={"Authorization": f"Bearer {key}"})
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(req, timeout=HANG).read())
    assert b"rtserver" in body


async def test_with_redis_a_key_made_on_another_node_works_here_and_its_revocation_closes_it(
    serve, tmp_path: Path, redis_server
):
    from rtserver.auth.cli import _share

    srv = await serve(auth="on", redis_url=redis_server.url)
    elsewhere = KeyStore(tmp_path / "other-node")  # `rtserver keys create --redis URL` on another node
    key = elsewhere.create("shared")
    kid = key.split("_")[1]
    await asyncio.to_thread(_share, redis_server.url, kid, elsewhere.record(kid))
    await srv.server.protection._shared_keys()  # the watch's next look, now
    live, reply = await hello(srv.url, key)
    assert reply["t"] == "welcome"
    elsewhere.revoke(kid)
    await asyncio.to_thread(_share, redis_server.url, kid, elsewhere.record(kid))
    assert await closed_with(live) == 4003  # within the watch's period


async def test_a_later_hello_renews_the_token_but_cannot_change_the_user(serve, tmp_path: Path):
    srv, _ = await protected(serve, tmp_path / "data")
    r, _ = await hello(srv.url, token("ann", ttl=600))
    await r.send({"t": "hello", "token": token("ann", ttl=1200), "id": "renew"})
    assert (await r.recv())["t"] == "welcome"
    await r.send({"t": "hello", "token": token("bob"), "id": "switch"})
    f = await r.recv()
    assert (f["code"], f["id"]) == ("forbidden", "switch") and r.ws.close_code is None
    sid = (await r.open())["sid"]
    assert srv.server.manager.sessions[sid].data.user == "ann"


async def test_security_events_and_the_audit_log_are_on_metrics(serve, tmp_path: Path):
    from ..helpers import http_get

    srv, _ = await protected(serve, tmp_path / "data")
    r, _ = await hello(srv.url, "bad")
    await closed_with(r)
    body = (await http_get(srv.http + "/metrics")).decode()
    assert 'rtserver_security_events_total{kind="auth_failed"} 1.0' in body
    assert "rtserver_audit_degraded 0.0" in body
