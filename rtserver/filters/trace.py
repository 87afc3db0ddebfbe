"""Connection filter, admit filter and turn filter of OpenTelemetry traces (only in the chain with
``tracing = true``): one trace per turn, continued from the client's W3C ``traceparent`` (on ``say``, or on
``hello`` for the whole connection).

    chat {model}            the turn (gen_ai.* attributes: operation, model, conversation id, usage, finish)
    ├── rt.receive          the frame's arrival to admission
    ├── rt.admission        the admission filters
    ├── rt.queue            waiting for an engine place (the engine's queue_ms)
    ├── rt.prefill          the rest of the way to the first token
    ├── rt.first_token      an event-like span at the first token
    ├── rt.streaming        first token to the end of the reply
    └── rt.durable_write    the turn's write to the store, ended when turn.end goes out

Spans are made after the fact from the turn's own timings (what metrics and turn.end read), so the per-token
path carries nothing. The turn's log lines carry ``trace_id``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import structlog

from ..engine.base import Event, Finish
from .base import CLIENT, Client, Handler, NoConnection, TurnContext


def _offset() -> int:
    return time.time_ns() - time.perf_counter_ns()


class TraceConnectionFilter(NoConnection):
    """Keeps the client's traceparent: ``hello``'s for the connection, a ``say``'s for its turn."""

    def frame(self, frame: dict[str, Any], client: Client) -> None:
        client.received = time.perf_counter()
        tp = frame.get("traceparent")
        if isinstance(tp, str) and len(tp) < 256:
            if frame["t"] == "hello":
                client.traceparent_hello = tp
            client.traceparent = tp
        elif frame["t"] != "ping":
            client.traceparent = client.traceparent_hello


class TraceFilter:
    def __init__(self, tracer: Any) -> None:
        from opentelemetry import trace
        from opentelemetry.propagate import extract

        self.tracer, self._trace, self._extract = tracer, trace, extract
        self.offset = _offset()

    def _ns(self, t: float) -> int:
        return int(t * 1e9) + self.offset

    def admit(self, ctx: TurnContext) -> None:
        client = CLIENT.get()
        carrier = {"traceparent": client.traceparent} if client is not None and client.traceparent else {}
        span = self.tracer.start_span(
            f"chat {ctx.model}",
            context=self._extract(carrier),
            start_time=self._ns(client.received if client is not None and client.received else ctx.started),
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": ctx.model,
                "gen_ai.conversation.id": ctx.sid,
                "rt.turn.id": ctx.tid,
            },
        )
        ctx.span = span
        if not span.is_recording():  # sampled out (the client's trace flags, or the SDK's sampler): nothing more
            span.end()
            ctx.span = None
            return
        if client is not None and client.received:
            self._child("rt.receive", span, client.received, ctx.started)
        ctx.admitted_at = time.perf_counter()

    def undo(self, ctx: TurnContext) -> None:
        if ctx.span is not None:
            ctx.span.set_attribute("rt.refused", True)
            ctx.span.end()
            ctx.span = None

    def _child(self, name: str, parent: Any, start: float, end: float) -> Any:
        span = self.tracer.start_span(name, context=self._trace.set_span_in_context(parent), start_time=self._ns(start))
        span.end(end_time=self._ns(max(start, end)))
        return span

    async def __call__(self, ctx: TurnContext, inner: Handler) -> AsyncIterator[Event]:
        root = ctx.span
        if root is None:
            async for event in inner(ctx):
                yield event
            return
        structlog.contextvars.bind_contextvars(trace_id=format(root.get_span_context().trace_id, "032x"))
        began = time.perf_counter()
        self._child("rt.admission", root, ctx.admitted_at or ctx.started, began)
        finish = Finish("error")
        try:
            async for event in inner(ctx):
                if isinstance(event, Finish):
                    finish = event
                yield event
        finally:
            self._after(ctx, root, began, finish)

    def _after(self, ctx: TurnContext, root: Any, began: float, finish: Finish) -> None:
        now = time.perf_counter()
        queued = began + finish.queue_ms / 1000
        first = ctx.first_token
        self._child("rt.queue", root, began, queued)
        if first is not None:
            self._child("rt.prefill", root, queued, first)
            self._child("rt.first_token", root, first, first)
            self._child("rt.streaming", root, first, ctx.ended or now)
        root.set_attribute("gen_ai.usage.input_tokens", finish.prompt_tokens)
        root.set_attribute("gen_ai.usage.output_tokens", finish.completion_tokens)
        root.set_attribute("gen_ai.response.finish_reasons", [finish.reason])
        write = self.tracer.start_span(
            "rt.durable_write", context=self._trace.set_span_in_context(root), start_time=self._ns(now)
        )

        def done() -> None:
            write.end()
            root.end()

        ctx.after.append(done)
