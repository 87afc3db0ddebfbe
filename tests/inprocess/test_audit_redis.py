"""Clustered audit: every record is copied to the node's Redis stream and the chain's head to Redis, so a log
cut short on the node, checkpoints and all, is still found by ``rtserver audit verify --redis``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import redis

from rtserver.audit.cli import _verify
from rtserver.audit.log import files

from ..helpers import Raw


async def test_records_reach_the_stream_and_a_cut_log_is_found_against_redis(
    serve, tmp_path: Path, redis_server, capsys
):
    data = tmp_path / "data"
    srv = await serve(redis_url=redis_server.url, audit_policy="redacted")
    srv.engine.run_freely()
    node = srv.server.node_id
    r = await Raw.connect(srv.url)
    await r.open()
    for text in ("mail me at ann@example.com", "two", "three"):
        await r.send({"t": "say", "text": text})
        await r.until("turn.end")
    await srv.stop()
    lines = [x for p in files(data / "audit") for x in p.read_bytes().splitlines() if x.strip()]
    with redis.Redis.from_url(redis_server.url) as client:
        stream = [e[1][b"r"] for e in client.xrange(f"rt:audit:{node}")]
        head = orjson.loads(client.get(f"rt:audit:head:{node}"))
    assert stream == lines and head["seq"] == 3
    assert orjson.loads(stream[0])["b"]["text"] == "mail me at <email>"
    assert await asyncio.to_thread(_verify, data / "audit", redis_server.url) == 0
    path = files(data / "audit")[-1]  # cut off the last record, and the local checkpoints with it
    path.write_bytes(b"".join(x + b"\n" for x in lines[:-1]))
    (data / "audit" / f"{node}.checkpoints").write_bytes(b"")
    assert await asyncio.to_thread(_verify, data / "audit") == 0  # locally, nothing shows
    assert await asyncio.to_thread(_verify, data / "audit", redis_server.url) == 1
    assert "cut off" in capsys.readouterr().out
