"""consumer_runtime.tracing without servers: when it turns on, the sampler, W3C headers on sends, the batch
span's links and parent, dead letters keeping the trace headers, trace ids on log lines."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from consumer_runtime import tracing
from consumer_runtime.dlq import DeadLetter, lineage, trace_context
from consumer_runtime.logging import add_trace_ids
from consumer_runtime.settings import ConfigError
from consumer_runtime.testing import captured_spans
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind


@dataclass
class Rec:
    topic: str
    headers: tuple[tuple[str, bytes], ...] = ()


def traceparent(trace_id: int, span_id: int) -> tuple[str, bytes]:
    return ("traceparent", f"00-{trace_id:032x}-{span_id:016x}-01".encode())


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with captured_spans() as exporter:
        yield exporter


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}, False),
    ],
)
def test_tracing_is_on_only_when_the_environment_names_an_endpoint_or_exporter(
    env: dict[str, str], on: bool
) -> None:
    assert tracing.requested(env) is on


def test_off_nothing_is_set_up_and_sends_carry_no_headers() -> None:
    assert tracing.configure_tracing("svc", env={}) is False
    assert not tracing.is_enabled()
    with tracing.publish_span("t") as headers:
        assert not headers
    with tracing.batch_span([Rec("t", (traceparent(1, 2),))], consumer="c", group="g") as span:
        assert span is None


def test_bad_sampler_or_protocol_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="OTEL_TRACES_SAMPLER"):
        tracing.sampler_from_env({"OTEL_TRACES_SAMPLER": "sometimes"})
    with pytest.raises(ConfigError, match="http/protobuf"):
        tracing._exporters({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER"):
        tracing._exporters({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_traces_start_at_requests_and_batches_only() -> None:
    exporter = InMemorySpanExporter()
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(sampler=tracing.sampler_from_env({}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("ping", kind=SpanKind.CLIENT):
        pass  # a background datastore call: no trace
    with (
        tracer.start_as_current_span("GET /x", kind=SpanKind.SERVER),
        tracer.start_as_current_span("find", kind=SpanKind.CLIENT),
    ):
        pass
    with tracer.start_as_current_span("process t", kind=SpanKind.CONSUMER):
        pass
    assert sorted(s.name for s in exporter.get_finished_spans()) == ["GET /x", "find", "process t"]
    ratio = tracing.sampler_from_env({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"})
    assert "TraceIdRatioBased" in ratio.get_description()


def test_a_send_is_a_producer_span_whose_context_the_headers_carry(spans: InMemorySpanExporter) -> None:
    with tracing.publish_span("orders") as headers:
        pass  # outside a request or a batch: not recorded (a trace starts at one of them only)
    assert headers
    assert spans.get_finished_spans() == ()
    with (
        tracing.batch_span([Rec("in")], consumer="c", group="g"),
        tracing.publish_span("orders", records=3) as headers,
    ):
        ids = tracing.current_ids()
    assert ids is not None
    span, _batch = spans.get_finished_spans()
    assert span.name == "send orders"
    assert span.kind == SpanKind.PRODUCER
    assert span.attributes is not None
    assert span.attributes["messaging.batch.message_count"] == 3
    assert dict(headers)["traceparent"].startswith(f"00-{ids[0]}-{ids[1]}-".encode())
    assert tracing.has_trace_headers(headers)
    context = tracing.record_context(headers)
    assert context is not None
    assert context.span_id == span.context.span_id


def test_a_batch_links_every_record_context_and_is_a_root_when_they_differ(
    spans: InMemorySpanExporter,
) -> None:
    records = [
        Rec("a", (traceparent(0xA1, 0x11),)),
        Rec("a", (traceparent(0xA2, 0x22),)),
        Rec("b", (traceparent(0xA1, 0x11),)),  # the same context again: one link
        Rec("b", ()),  # untraced
        Rec("b", (("traceparent", b"garbage"),)),  # malformed: ignored
        Rec("b", (traceparent(0xA3, 0x33), ("tracestate", b"k=v"))),
    ]
    with tracing.batch_span(records, consumer="svc", group="grp") as span:
        assert span is not None
        inner = trace.get_current_span()
        assert inner is span
    (done,) = spans.get_finished_spans()
    assert done.name == "process a, b"
    assert done.kind == SpanKind.CONSUMER
    assert done.parent is None
    linked = [(link.context.trace_id, link.context.span_id) for link in done.links]
    assert linked == [(0xA1, 0x11), (0xA2, 0x22), (0xA3, 0x33)]
    assert done.links[2].context.trace_state.get("k") == "v"
    assert done.attributes is not None
    assert done.attributes["messaging.batch.message_count"] == 6
    assert done.attributes["messaging.consumer.group.name"] == "grp"


def test_a_batch_of_one_trace_continues_it(spans: InMemorySpanExporter) -> None:
    records = [Rec("t", (traceparent(0xB1, 0x44),)), Rec("t", (traceparent(0xB1, 0x44),)), Rec("t")]
    with tracing.batch_span(records, consumer="svc", group="grp"), tracing.publish_span("out") as headers:
        pass
    send, process = spans.get_finished_spans()
    assert process.name == "process t"
    assert process.context.trace_id == 0xB1
    assert process.parent is not None
    assert process.parent.span_id == 0x44
    assert [(link.context.trace_id, link.context.span_id) for link in process.links] == [(0xB1, 0x44)]
    assert process.attributes is not None
    assert process.attributes["messaging.destination.name"] == "t"
    assert send.parent is not None
    assert send.parent.span_id == process.context.span_id
    assert tracing.record_context(headers).span_id == send.context.span_id  # type: ignore[union-attr]


def test_a_dead_letter_keeps_the_records_trace_headers() -> None:
    headers = [("x-app", b"1"), traceparent(0xC1, 0x55), ("tracestate", b"k=v"), ("dlq.replay.count", b"2")]
    kept = lineage(headers)
    assert dict(kept) == {
        "traceparent": dict([traceparent(0xC1, 0x55)])["traceparent"],
        "tracestate": b"k=v",
        "dlq.replay.count": b"2",
    }
    letter = DeadLetter(
        topic="t",
        partition=0,
        offset=7,
        key=None,
        value=b"{}",
        timestamp_ms=1,
        error=ValueError("bad"),
        stage="decode",
        dlq_topic="t.dlq",
        lineage=kept,
    )
    written = letter.headers("g")
    assert trace_context(written) == [traceparent(0xC1, 0x55), ("tracestate", b"k=v")]
    assert trace_context({"traceparent": "00-x", "other": "y"}) == [("traceparent", b"00-x")]


def test_log_lines_inside_a_span_carry_its_ids(spans: InMemorySpanExporter) -> None:
    assert add_trace_ids(None, "info", {}) == {}
    with tracing.publish_span("t"):
        ids = tracing.current_ids()
        assert ids is not None
        assert add_trace_ids(None, "info", {}) == {"trace_id": ids[0], "span_id": ids[1]}


def test_an_otlp_endpoint_gets_the_spans_over_http(tmp_path: Path) -> None:
    """The configuration a service gets from ``OTEL_EXPORTER_OTLP_ENDPOINT``, in a process of its own (the
    global provider is set once per process), exporting to a receiver this test runs."""
    received: list[tuple[str, str, bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            received.append((self.path, self.headers.get("content-type", ""), body))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    script = tmp_path / "traced.py"
    script.write_text(
        "from consumer_runtime import tracing\n"
        "assert tracing.configure_tracing('orders-svc')\n"
        "record = type('R', (), {'topic': 'orders', 'headers': ()})()\n"
        "with tracing.batch_span([record], consumer='c', group='g'):\n"
        "    pass\n"
        "tracing.shutdown_tracing()\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
    }
    try:
        done = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    assert received, done.stdout + done.stderr
    path, content_type, body = received[0]
    assert path == "/v1/traces"
    assert content_type == "application/x-protobuf"
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest.FromString(body)
    (resource,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"]
    assert service == "orders-svc"
    assert [s.name for scope in resource.scope_spans for s in scope.spans] == ["process orders"]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", True),
        (b"00-00000000000000000000000000000001-0000000000000001-00", True),
        (b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later", True),  # a future version
        (b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", False),
        (b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", False),
        (b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", False),
        (b"00-00000000000000000000000000000000-00f067aa0ba902b7-01", False),
        (b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", False),
        (b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", False),
        (b"00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01", False),
        (b"", False),
    ],
)
def test_traceparent_parsing_follows_w3c(value: bytes, ok: bool) -> None:
    context = tracing.record_context([("traceparent", value), ("tracestate", b"vendor=x")])
    assert (context is not None) is ok
    if context is not None:
        assert context.is_remote
        assert context.trace_state.get("vendor") == "x"
        assert f"{context.trace_id:032x}" == value.split(b"-")[1].decode()
