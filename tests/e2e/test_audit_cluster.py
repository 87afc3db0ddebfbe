"""The clustered audit copy on a Redis Cluster: a node's records reach its stream and the chain's head reaches
Redis through the cluster's client, so ``rtserver audit verify --redis`` finds a log cut short on the node."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import orjson

from rtserver.audit.cli import _verify
from rtserver.audit.log import files
from rtserver.fleet.clients import sync_client

from ..helpers import Raw


async def test_a_nodes_audit_reaches_a_redis_cluster_and_a_cut_log_is_found(
    start_server: Any, redis_cluster: Any, tmp_path: Path, capsys: Any
):
    data = tmp_path / "data"
    env = {"RTSERVER_AUDIT_POLICY": "redacted", "RTSERVER_REDIS_TIMEOUT": "5"}
    args = ("--engine", "scripted", "--scripted-rate", "200", "--redis", redis_cluster.url, "--node-id", "n0")
    srv = start_server(*args, data_dir=data, env=env)
    r = await Raw.connect(srv.url)
    await r.open()
    for text in ("mail me at ann@example.com", "two", "three"):
        await r.send({"t": "say", "text": text})
        await r.until("turn.end")
    assert srv.signal(signal.SIGTERM) == 0  # everything buffered is written, and copied
    lines = [x for p in files(data / "audit") for x in p.read_bytes().splitlines() if x.strip()]
    with sync_client(redis_cluster.url, 5.0, cluster=True) as client:
        stream = [e[1][b"r"] for e in client.xrange("rt:audit:n0")]
        head = orjson.loads(client.get("rt:audit:head:n0"))
    assert stream == lines and head["seq"] == len(lines) >= 3
    assert [orjson.loads(x)["b"].get("text") for x in stream].count("mail me at <email>") == 1
    assert await asyncio.to_thread(_verify, data / "audit", redis_cluster.url) == 0
    path = files(data / "audit")[-1]  # cut off the last record, and the local checkpoints with it
    path.write_bytes(b"".join(x + b"\n" for x in lines[:-1]))
    (data / "audit" / "n0.checkpoints").write_bytes(b"")
    assert await asyncio.to_thread(_verify, data / "audit") == 0  # locally, nothing shows
    assert await asyncio.to_thread(_verify, data / "audit", redis_cluster.url) == 1
    assert "cut off" in capsys.readouterr().out
