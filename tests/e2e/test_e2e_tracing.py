"""Traces across processes: the five services as separate processes (like `make run`), configured only by
``OTEL_EXPORTER_OTLP_ENDPOINT``, exporting over OTLP/HTTP (protobuf) to a receiver this test runs on
127.0.0.1 — the path a deployment's collector sees. Asserts the span tree and links of the issue's two flows:

1. ``POST /messages`` through the gateway is one trace: the gateway's SERVER span → its PRODUCER span (whose
   context the record carries) → the search-indexer's and the notifier's CONSUMER batch spans, each linked to
   that context and continuing it, under them the Elasticsearch bulk write and the notifier's MongoDB insert
   and its publish to ``platform.notifications.sent``; the request's wide event, stored by the log-sink, is
   found by ``GET /api/v1/logs?trace_id=``.
2. An issue event produced by a plain Kafka client with a ``traceparent`` header continues into the
   issue-ingestor's batch span and its ``mysql transaction``.

``tests/observability/test_tracing_flow.py`` checks the same tree in one process (gateway and notifier, the
SDK's in-memory exporter) in more detail; here the context has to cross real process boundaries, the
services' own start-up sets tracing up, and the export is the real OTLP one.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_harness import Names, Stack, eventually, shared_endpoints

pytestmark = pytest.mark.integration

SERVICE_NAMES = ("issue-ingestor", "log-sink", "search-indexer", "notifier")


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: str  # SERVER, CLIENT, PRODUCER, CONSUMER, INTERNAL
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root
    links: tuple[tuple[str, str], ...]
    attributes: dict[str, Any] = field(hash=False, compare=False)


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


class OtlpReceiver:
    """The smallest OTLP/HTTP trace receiver: ``POST /v1/traces`` (protobuf, gzip or not) → :class:`Span`s."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )
        from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

        self.spans: list[Span] = []
        self.requests = 0
        lock = threading.Lock()
        receiver = self
        kinds = {v: k.removeprefix("SPAN_KIND_") for k, v in PbSpan.SpanKind.items()}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                request = ExportTraceServiceRequest.FromString(body)
                got = []
                for rs in request.resource_spans:
                    resource = {a.key: _value(a.value) for a in rs.resource.attributes}
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            got.append(
                                Span(
                                    service=str(resource.get("service.name", "")),
                                    name=s.name,
                                    kind=kinds[s.kind],
                                    trace_id=s.trace_id.hex(),
                                    span_id=s.span_id.hex(),
                                    parent_id=s.parent_span_id.hex(),
                                    links=tuple((ln.trace_id.hex(), ln.span_id.hex()) for ln in s.links),
                                    attributes={a.key: _value(a.value) for a in s.attributes},
                                )
                            )
                with lock:
                    receiver.spans.extend(got)
                    receiver.requests += 1
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> OtlpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def trace(self, trace_id: str) -> list[Span]:
        return [s for s in list(self.spans) if s.trace_id == trace_id]


@dataclass
class Traced:
    stack: Stack
    otlp: OtlpReceiver


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
async def traced(otlp: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Traced]:
    """A stack of its own (names of its own) whose services trace because the environment names an
    OTLP endpoint — nothing else is set but the batch processor's delay (200 ms instead of 5 s)."""
    names = Names.fresh("e2etrc")
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    stack = Stack(names, shared_endpoints(), Path(tmp_path_factory.mktemp(f"stack-{names.rid}")), env=env)
    try:
        await stack.start(*SERVICE_NAMES)
        await stack.start("gateway")
        yield Traced(stack, otlp)
    finally:
        await stack.close()


def one(spans: list[Span], what: str, **match: Any) -> Span:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, f"{what}: {len(found)} spans match {match}; spans: {_names(spans)}"
    return found[0]


def _names(spans: list[Span]) -> list[str]:
    return sorted(f"{s.service}:{s.kind}:{s.name}" for s in spans)


def descends(span: Span, ancestor: Span, spans: list[Span]) -> bool:
    by_id = {s.span_id: s for s in spans}
    current: Span | None = span
    while current is not None and current.parent_id:
        if current.parent_id == ancestor.span_id:
            return True
        current = by_id.get(current.parent_id)
    return False


async def test_a_post_through_the_gateway_is_one_trace_across_the_processes(traced: Traced) -> None:
    stack, otlp = traced.stack, traced.otlp
    created = stack.names.topic("platform.messages.created")
    sent = stack.names.topic("platform.notifications.sent")
    mention = f"u_{uuid.uuid4().hex[:8]}"
    body = {"channel_id": "ch_trace", "author_id": "u_author", "content": "추적 trace", "mentions": [mention]}
    async with httpx.AsyncClient(
        base_url=stack.url("gateway"), headers=stack.app_headers(), timeout=30
    ) as gw:
        response = await gw.post("/messages", json=body)
        assert response.status_code == 200, response.text
        trace_id = response.headers["x-trace-id"]

        async def exported() -> list[Span] | None:
            spans = otlp.trace(trace_id)
            have = {(s.service, s.name) for s in spans}
            wanted = {
                ("gateway", "POST /messages"),
                ("search-indexer", f"process {created}"),
                ("notifier", f"process {created}"),
                ("notifier", f"send {sent}"),
            }
            es = any(s.attributes.get("db.system") == "elasticsearch" for s in spans)
            return spans if wanted <= have and es else None

        spans: list[Span] = await eventually(exported, timeout=60, what="the trace's spans from 3 services")
        await asyncio.sleep(0.5)  # one more export round: spans that ended with the last ones
        spans = otlp.trace(trace_id)

        # the request's wide event, stored by the log-sink, found by its trace id
        async def logged() -> list[dict[str, Any]] | None:
            r = await gw.get("/api/v1/logs", params={"trace_id": trace_id})
            items: list[dict[str, Any]] = r.json()["items"] if r.status_code == 200 else []
            return [e for e in items if e.get("path") == "/messages"] or None

        (event,) = await eventually(logged, timeout=30, what="the request's wide event by trace_id")

    request = one(spans, "the gateway's request", service="gateway", name="POST /messages", kind="SERVER")
    assert event["trace_id"] == trace_id
    assert event["span_id"] == request.span_id
    produce_span = one(spans, "the gateway's produce", service="gateway", name=f"send {created}")
    assert produce_span.kind == "PRODUCER"
    assert descends(produce_span, request, spans)
    assert produce_span.attributes["messaging.destination.name"] == created

    for service in ("search-indexer", "notifier"):
        batches = [s for s in spans if s.service == service and s.name == f"process {created}"]
        assert batches, (service, _names(spans))
        for batch in batches:  # a retried batch is a second span: each one is linked and continues
            assert batch.kind == "CONSUMER"
            assert batch.links == ((trace_id, produce_span.span_id),), (service, batch.links)
            assert batch.parent_id == produce_span.span_id, service
            assert batch.attributes["messaging.consumer.group.name"] == stack.names.group(service)

    # the search-indexer's bulk write: Elasticsearch's own span under its batch span
    index_batches = [s for s in spans if s.service == "search-indexer" and s.kind == "CONSUMER"]
    bulk = [
        s
        for s in spans
        if s.service == "search-indexer"
        and s.attributes.get("db.system") == "elasticsearch"
        and s.attributes.get("db.operation") == "bulk"
    ]
    assert bulk, _names(spans)
    assert all(any(descends(b, batch, spans) for batch in index_batches) for b in bulk)

    # the notifier's MongoDB insert and its publish, under its batch span; the publish's context travels on
    notifier_batches = [s for s in spans if s.service == "notifier" and s.kind == "CONSUMER"]
    inserts = [
        s
        for s in spans
        if s.service == "notifier" and s.attributes.get("db.system") == "mongodb" and "insert" in s.name
    ]
    assert inserts, _names(spans)
    assert all(any(descends(i, batch, spans) for batch in notifier_batches) for i in inserts)
    publish = one(spans, "the notifier's publish", service="notifier", name=f"send {sent}")
    assert publish.kind == "PRODUCER"
    assert any(publish.parent_id == batch.span_id for batch in notifier_batches)
    records = await _read(stack, sent, mention)
    assert records, "the notification record"
    carried = {tuple(v.split("-")[1:3]) for r in records for k, v in r if k == "traceparent"}
    assert carried == {(trace_id, publish.span_id)}, (records, publish)  # flags: sampled (+ W3C random)

    # nothing of this trace comes from a service that had no part in it
    assert {s.service for s in spans} == {"gateway", "search-indexer", "notifier"}


async def _read(stack: Stack, topic: str, needle: str) -> list[list[tuple[str, str]]]:
    """The headers of the records of ``topic`` whose value mentions ``needle``."""
    from e2e_harness import read_topic

    records = await read_topic(stack.ep.kafka, topic, expect=1)
    return [
        [(k, v.decode()) for k, v in r.headers]
        for r in records
        if needle.encode() in (r.value or b"") or needle.encode() in (r.key or b"")
    ]


async def test_an_issue_event_with_a_traceparent_continues_into_the_ingestors_transaction(
    traced: Traced,
) -> None:
    stack, otlp = traced.stack, traced.otlp
    topic = stack.names.topic("chatbot-issue-events")
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    issue_id = f"TRACE_{uuid.uuid4().hex[:10]}"
    event = {
        "issue": issue_id,
        "processType": "장애접수",
        "modeType": "프레스",
        "modeLogId": f"{issue_id}_LOG",
        "description": "traced",
        "isSolved": False,
        "timestamp": "2026-12-06T04:00:00",
    }
    # a plain client (not the platform's code): aiokafka with the W3C header set by hand
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=stack.ep.kafka, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topic,
            json.dumps(event, ensure_ascii=False).encode(),
            key=issue_id.encode(),
            headers=[("traceparent", f"00-{trace_id}-{parent}-01".encode())],
        )
    finally:
        await producer.stop()

    async def exported() -> list[Span] | None:
        spans = otlp.trace(trace_id)
        return spans if any(s.name == "mysql transaction" for s in spans) else None

    spans: list[Span] = await eventually(exported, timeout=60, what="the ingestor's transaction span")
    batch = one(spans, "the ingestor's batch", service="issue-ingestor", name=f"process {topic}")
    assert batch.kind == "CONSUMER"
    assert batch.parent_id == parent  # the producer's context, continued
    assert batch.links == ((trace_id, parent),)
    transaction = one(spans, "the transaction", service="issue-ingestor", name="mysql transaction")
    assert transaction.kind == "CLIENT"
    assert transaction.parent_id == batch.span_id
    assert transaction.attributes["db.system"] == "mysql"
    assert transaction.attributes["db.namespace"] == stack.names.mysql_db
    async with httpx.AsyncClient(
        base_url=stack.url("gateway"), headers=stack.app_headers(), timeout=30
    ) as gw:
        stored = await gw.get(f"/api/kafka/issues/{issue_id}")
    assert stored.status_code == 200, stored.text
