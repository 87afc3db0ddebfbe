"""OpenTelemetry traces with the SDK's in-memory exporter: one trace per turn with the phases' spans, continued
from the client's traceparent; none at all with tracing off."""

from __future__ import annotations

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ..helpers import Raw

EXPORTER = InMemorySpanExporter()
PHASES = {"rt.receive", "rt.admission", "rt.queue", "rt.prefill", "rt.first_token", "rt.streaming", "rt.durable_write"}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.fixture
def spans():  # type: ignore[no-untyped-def]
    if not isinstance(trace.get_tracer_provider(), TracerProvider):  # the global provider is set once a process
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


async def turn(r: Raw, text: str, **extra: object) -> dict:
    await r.send({"t": "say", "text": text, **extra})
    end, _ = await r.until("turn.end")
    return end


@pytest.fixture
def merged():  # type: ignore[no-untyped-def]
    """Log events as rendered, after structlog's merge_contextvars (which the server's logs.configure runs)."""
    events: list[dict] = []

    def keep(logger: object, method: str, event: dict) -> dict:
        events.append(dict(event))
        return event

    processors = structlog.get_config()["processors"]
    processors.insert(processors.index(structlog.contextvars.merge_contextvars) + 1, keep)
    structlog.configure(processors=processors)
    yield events
    processors.remove(keep)
    structlog.configure(processors=processors)


async def test_a_trace_per_turn_with_the_phases_continued_from_the_clients_traceparent(serve, spans, merged):
    srv = await serve(tracing=True)
    srv.engine.run_freely()
    r = await Raw.connect(srv.url)
    sid = (await r.open())["sid"]
    await turn(r, "continue my trace", traceparent=f"00-{TRACE_ID}-{PARENT}-01")
    await turn(r, "a trace of its own")
    done = spans.get_finished_spans()
    roots = [s for s in done if s.name == "chat default"]
    assert len(roots) == 2
    first, second = roots
    assert format(first.context.trace_id, "032x") == TRACE_ID and format(first.parent.span_id, "016x") == PARENT
    assert second.context.trace_id != first.context.trace_id and second.parent is None
    for root in roots:
        children = {s.name for s in done if s.parent is not None and s.parent.span_id == root.context.span_id}
        assert children == PHASES
        assert root.attributes["gen_ai.conversation.id"] == sid
        assert root.attributes["gen_ai.usage.output_tokens"] > 0
        assert root.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert [e["trace_id"] for e in merged if e.get("event") == "turn"][0] == TRACE_ID  # the turn's log line


async def test_a_traceparent_on_hello_covers_the_connections_turns(serve, spans):
    srv = await serve(tracing=True)
    srv.engine.run_freely()
    r = await Raw.connect(srv.url, hello=False)
    await r.send({"t": "hello", "traceparent": f"00-{TRACE_ID}-{PARENT}-01"})
    await r.recv()
    await r.open()
    await turn(r, "one")
    roots = [s for s in spans.get_finished_spans() if s.name == "chat default"]
    assert [format(s.context.trace_id, "032x") for s in roots] == [TRACE_ID]


async def test_tracing_off_makes_no_spans(serve, spans):
    srv = await serve()
    srv.engine.run_freely()
    r = await Raw.connect(srv.url)
    await r.open()
    await turn(r, "hi", traceparent=f"00-{TRACE_ID}-{PARENT}-01")
    assert spans.get_finished_spans() == ()
    assert not any("trace" in n for n in srv.server.pipeline.names)


async def test_a_trace_the_client_did_not_sample_costs_no_spans(serve, spans):
    srv = await serve(tracing=True)
    srv.engine.run_freely()
    r = await Raw.connect(srv.url)
    await r.open()
    await turn(r, "not sampled", traceparent=f"00-{TRACE_ID}-{PARENT}-00")  # flags 00: the client does not sample
    assert spans.get_finished_spans() == ()
