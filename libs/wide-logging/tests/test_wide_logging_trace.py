"""Wide events carry the trace of the request they describe (no server needed)."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind
from wide_logging import WideLogger, WideLoggingConfig


def test_an_event_made_inside_a_span_carries_its_trace_and_span_ids() -> None:
    logger = WideLogger(WideLoggingConfig.from_env({}, service="checkout"))
    assert "trace_id" not in logger.event(kind="job")  # no span, no ids
    tracer = TracerProvider().get_tracer("test")  # a provider of its own: the global one is left alone
    with tracer.start_as_current_span("GET /x", kind=SpanKind.SERVER) as span:
        event = logger.event(kind="http_request")
        explicit = logger.event(trace_id="given")
    context = span.get_span_context()
    assert event["trace_id"] == format(context.trace_id, "032x")
    assert event["span_id"] == format(context.span_id, "016x")
    assert len(event["trace_id"]) == 32
    assert explicit["trace_id"] == "given"  # what the caller passes wins
