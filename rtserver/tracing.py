"""OpenTelemetry set-up (``tracing = true``; off by default, and then nothing here is imported or called).

With tracing on and no SDK provider installed yet, one is made with a batch exporter over OTLP/HTTP, configured
by the standard ``OTEL_EXPORTER_OTLP_*`` variables (``pip install rtserver[otel]``). A provider installed
before (an application embedding the server, the tests' in-memory exporter) is used as it is.
"""

from __future__ import annotations

from typing import Any

import structlog

log = structlog.get_logger("rtserver.tracing")


def tracer() -> Any:
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if type(provider).__name__ in ("ProxyTracerProvider", "NoOpTracerProvider"):
        provider = _sdk_provider() or provider
    return provider.get_tracer("rtserver")


def _sdk_provider() -> Any:
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("tracing_without_exporter", hint="pip install 'rtserver[otel]' to export traces over OTLP")
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": "rtserver"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider
