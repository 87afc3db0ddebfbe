"""A turn said on one node of a fleet and carried out by another stays one trace: two ``rtserver serve`` nodes
sharing a real ``redis-server`` export over real OTLP/HTTP to a small collector in the test, and the owner's spans
continue the traceparent of the client connected to the other node. Scripted engine; no timers."""

from __future__ import annotations

import asyncio
import queue
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from ..helpers import Raw

# rt.receive of a relayed turn runs from the frame's arrival on the node the client is connected to, to the turn's
# start on the owner: the hop between nodes is in the trace.
PHASES = {"rt.receive", "rt.admission", "rt.queue", "rt.prefill", "rt.first_token", "rt.streaming", "rt.durable_write"}
WAIT = 60.0  # a bound against hangs, never a synchronisation: a node exports within its batch delay


@dataclass(frozen=True)
class Span:
    node: str  # the exporting node's service.instance.id
    name: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root
    attributes: dict[str, Any]


def _value(v: Any) -> Any:
    return getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None


def _spans(body: bytes) -> Iterator[Span]:
    req = ExportTraceServiceRequest.FromString(body)
    for rs in req.resource_spans:
        node = {kv.key: _value(kv.value) for kv in rs.resource.attributes}.get("service.instance.id", "")
        for ss in rs.scope_spans:
            for s in ss.spans:
                attrs = {kv.key: _value(kv.value) for kv in s.attributes}
                yield Span(node, s.name, s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), attrs)


@pytest.fixture
def collector() -> Iterator[tuple[str, queue.Queue[Span]]]:
    """An OTLP/HTTP trace collector on a free port: each exported span goes into the queue."""
    received: queue.Queue[Span] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/v1/traces":
                for span in _spans(body):
                    received.put(span)
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200 if self.path == "/v1/traces" else 404)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="otlp-collector", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1/traces", received
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def traced_fleet(start_server, redis_server, collector):  # type: ignore[no-untyped-def]
    """Two traced nodes, n0 and n1, sharing one redis-server and exporting to the collector."""
    endpoint, _ = collector

    def start(name: str) -> Any:
        env = {
            "RTSERVER_TRACING": "true",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "20",  # milliseconds: export each turn's spans soon after they end
            "OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id={name}",
        }
        return start_server("--engine", "scripted", "--scripted-rate", "200", "--redis", redis_server.url,
                            "--node-id", name, env=env)  # fmt: skip

    return start("n0"), start("n1")


async def spans_until(received: queue.Queue[Span], done: Callable[[list[Span]], bool]) -> list[Span]:
    """The spans exported so far, read from the collector until ``done`` holds of them."""
    got: list[Span] = []
    while not done(got):
        try:
            got.append(await asyncio.to_thread(received.get, timeout=WAIT))
        except queue.Empty:
            raise AssertionError(f"no span exported for {WAIT}s; so far: {[(s.node, s.name) for s in got]}") from None
    return got


def root_of(sid: str, got: list[Span]) -> list[Span]:
    return [s for s in got if s.attributes.get("gen_ai.conversation.id") == sid]


def turn_in(sid: str) -> Callable[[list[Span]], bool]:
    """The root span of a turn in this session and its phases' spans have all come."""

    def done(got: list[Span]) -> bool:
        return any(PHASES <= {s.name for s in got if s.parent_id == r.span_id} for r in root_of(sid, got))

    return done


async def owned_by_n0_said_on_n1(a: Any, b: Any) -> tuple[str, Raw]:
    """A session opened on node n0 (its owner) and a client following it from node n1."""
    sid = (await (await Raw.connect(a.url)).open())["sid"]
    rb = await Raw.connect(b.url)
    await rb.send({"t": "session.open", "sid": sid, "id": "attach"})
    await rb.until("session")
    return sid, rb


async def test_a_turn_said_on_another_node_continues_the_clients_trace_on_the_owner(traced_fleet, collector):
    a, b = traced_fleet
    _, received = collector
    sid, rb = await owned_by_n0_said_on_n1(a, b)
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    await rb.send({"t": "say", "sid": sid, "text": "hello", "id": 1, "traceparent": f"00-{trace_id}-{parent}-01"})
    end, _ = await rb.until("turn.end")
    assert end["reason"] == "stop"

    got = await spans_until(received, turn_in(sid))
    [root] = root_of(sid, got)
    assert root.node == "n0" and root.name.startswith("chat ")
    assert root.trace_id == trace_id and root.parent_id == parent  # the owner continues the client's span on n1
    children = [s for s in got if s.parent_id == root.span_id]
    assert {s.name for s in children} == PHASES
    assert {s.trace_id for s in children} == {trace_id} and {s.node for s in children} == {"n0"}


async def test_a_turn_relayed_without_a_traceparent_is_one_trace(traced_fleet, collector):
    a, b = traced_fleet
    _, received = collector
    sid, rb = await owned_by_n0_said_on_n1(a, b)
    await rb.send({"t": "say", "sid": sid, "text": "no trace of mine", "id": 1})
    end, _ = await rb.until("turn.end")
    assert end["reason"] == "stop"

    # Fences: a turn in a session of each node's own, after the relayed one. A node exports its spans in the order
    # they end, so once a node's fence has come, whatever that node made for the relayed turn has come before it.
    fences = []
    for node in (a, b):
        r = await Raw.connect(node.url)
        fences.append((await r.open())["sid"])
        await r.send({"t": "say", "sid": fences[-1], "text": "fence", "id": 1})
        await r.until("turn.end")
    got = await spans_until(received, lambda got: all(turn_in(f)(got) for f in (sid, *fences)))

    [root] = root_of(sid, got)
    assert root.node == "n0" and root.name.startswith("chat ") and root.parent_id == ""
    assert [s.node for f in fences for s in root_of(f, got)] == ["n0", "n1"]  # each node's fence, from that node
    fenced = {s.trace_id for f in fences for s in root_of(f, got)}
    outside = [s for s in got if s.trace_id not in fenced]  # everything either node made but the fences
    assert {s.trace_id for s in outside} == {root.trace_id}  # one trace, and no span of n1's in another
    assert {s.node for s in outside} == {"n0"}
    assert sorted(s.name for s in outside if s.parent_id == root.span_id) == sorted(PHASES)
    assert len(outside) == 1 + len(PHASES)
