"""A local Redis Cluster for tests: three masters, no replicas, each a ``RedisProc`` (free port, its own
directory, ``appendonly yes``, ``appendfsync always``) started with ``cluster-enabled yes``.

The cluster is formed with ``redis-cli --cluster create`` and is ready once every node's ``CLUSTER INFO`` says
``cluster_state:ok`` with all 16384 slots served and every node known — a polled state, never a timer.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from .redisproc import RedisProc, free_port

SLOTS = 16384


@dataclass
class RedisClusterProc:
    dir: Path
    masters: int = 3
    ready_timeout: float = 30.0  # a bound on the wait for the cluster to agree, not a sleep
    extra: list[str] = field(default_factory=list)  # more redis-server arguments for every node
    nodes: list[RedisProc] = field(default_factory=list)

    @staticmethod
    def available() -> bool:
        return RedisProc.available() and shutil.which("redis-cli") is not None

    @property
    def url(self) -> str:
        """A seed node's URL, as a deployment passes it (``redis.asyncio.cluster.RedisCluster.from_url``)."""
        return self.nodes[0].url

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def start(self) -> RedisClusterProc:
        """Start the nodes, join them into one cluster (the first start only) and wait until it serves."""
        fresh = not self.nodes
        if fresh:
            for i in range(self.masters):
                # The bus port is chosen too: the default (port + 10000) can lie past 65535 for a high free port.
                extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                         "--cluster-port", str(free_port()), "--cluster-node-timeout", "5000", *self.extra]  # fmt: skip
                self.nodes.append(RedisProc(self.dir / f"node{i}", extra=extra))
        for node in self.nodes:
            node.start()
        if fresh:
            subprocess.run(
                ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
        self.wait_ok()
        return self

    def wait_ok(self) -> None:
        """Poll every node's CLUSTER INFO until all agree the cluster is whole."""
        deadline = time.monotonic() + self.ready_timeout
        pending = list(self.nodes)
        while pending:
            pending = [n for n in pending if not self._ok(n)]
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"cluster not ok after {self.ready_timeout}s on ports {[n.port for n in pending]}")
            if pending:
                time.sleep(0.05)  # poll interval between looks at the state, not a wait for it

    def _ok(self, node: RedisProc) -> bool:
        with redis.Redis(port=node.port, socket_timeout=2) as r:
            raw = r.execute_command("CLUSTER", "INFO")
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        info = dict(line.split(":", 1) for line in text.split() if ":" in line)
        return (
            info.get("cluster_state") == "ok"
            and info.get("cluster_slots_ok") == str(SLOTS)
            and info.get("cluster_known_nodes") == str(self.masters)
        )

    def stop(self, kill: bool = False) -> None:
        for node in self.nodes:
            node.stop(kill)
