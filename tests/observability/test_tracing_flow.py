"""One trace across Kafka: a ``POST /messages`` through the gateway → its produce → the notifier's batch
(linked to, and continuing, the producer's context) → the notifier's MongoDB writes and its publish to
``platform.notifications.sent``, whose records carry the publish span's W3C context; the request's wide
log event and its ``X-Trace-ID`` answer name the same trace.

The gateway and the notifier run in this process (their lifespans, over the local Kafka and MongoDB) with
the SDK's in-memory span exporter (``consumer_runtime.testing.captured_spans``): the same set-up a service
gets from ``OTEL_EXPORTER_OTLP_ENDPOINT``, exporting to memory instead of a collector.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from consumer_runtime import tracing
from consumer_runtime.testing import captured_spans, delete_topics, fast_settings, read_all, wait_until
from consumer_runtime.topics import ensure_topics
from fastapi import FastAPI
from gateway.app import create_app as create_gateway
from gateway.config import GatewaySettings
from notifier.app import create_app as create_notifier
from notifier.config import Settings as NotifierSettings
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from pymongo import AsyncMongoClient

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[FastAPI]:
    async with app.router.lifespan_context(app):
        yield app


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def test_a_post_is_one_trace_from_the_gateway_through_kafka_to_the_notifiers_writes(
    kafka_bootstrap: str, mongo_url: str
) -> None:
    rid = uuid.uuid4().hex[:8]
    created, sent, logs = f"trc-{rid}-created", f"trc-{rid}-sent", f"trc-{rid}-logs"
    db = f"trc_{rid}"
    kafka: dict[str, Any] = {
        **fast_settings(kafka_bootstrap).model_dump(),
        "kafka_topic_messages_created": created,
        "kafka_topic_notifications_sent": sent,
        "kafka_log_topic": logs,
    }
    await ensure_topics(fast_settings(kafka_bootstrap), [created, sent, logs])
    try:
        with captured_spans() as exporter:
            gateway = create_gateway(
                GatewaySettings(
                    **{**kafka, "kafka_auto_create_topics": False},  # only this test's topics
                    wide_logging_enabled=True,  # its wide events go to this test's log topic
                    admin_token="trace-token",
                )
            )
            notifier = create_notifier(
                NotifierSettings(
                    **{**kafka, "kafka_consumer_group": f"trc-{rid}-notifier"},
                    mongo_url=mongo_url,
                    notifier_mongo_db=db,
                    live_tail_enabled=False,
                )
            )
            async with running(notifier), running(gateway):
                transport = httpx.ASGITransport(app=gateway)
                async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                    body = {"channel_id": "ch_trace", "author_id": "u_a", "content": "hi"}
                    response = await client.post(
                        "/messages",
                        json={**body, "mentions": ["u_b"]},
                        headers={"Authorization": "Bearer trace-token"},
                    )
                    assert response.status_code == 200, response.text
                    trace_header = response.headers["x-trace-id"]

                await wait_until(
                    lambda: by_name(exporter.get_finished_spans(), f"send {sent}"),
                    timeout=30,
                    what="the notifier's publish span",
                )
                (published,) = await read_all(kafka_bootstrap, sent, expect=1)
            spans = exporter.get_finished_spans()
        wide = [json.loads(r.value) for r in await read_all(kafka_bootstrap, logs, expect=1)]
    finally:
        await delete_topics(kafka_bootstrap, [created, sent, f"{created}.dlq", logs])
        client_ = AsyncMongoClient[dict[str, Any]](mongo_url)
        with contextlib.suppress(Exception):
            await client_.drop_database(db)
        await client_.close()

    assert not tracing.is_enabled()  # off again after the block
    (request,) = by_name(spans, "POST /messages")
    assert request.kind == SpanKind.SERVER
    trace_id = request.context.trace_id

    # the request's wide event carries its trace (what GET /api/v1/logs?trace_id= filters on)
    assert trace_header == format(trace_id, "032x")
    (event,) = [e for e in wide if e.get("path") == "/messages"]
    assert (event["trace_id"], event["span_id"]) == (trace_header, format(request.context.span_id, "016x"))

    (produce,) = by_name(spans, f"send {created}")
    assert produce.kind == SpanKind.PRODUCER
    assert produce.parent is not None
    assert produce.parent.span_id == request.context.span_id

    # the batch: linked to the producer's context, and (its only trace) continuing it
    batches = by_name(spans, f"process {created}")
    assert batches, sorted(s.name for s in spans)
    batch = batches[-1]  # the attempt that succeeded
    assert batch.kind == SpanKind.CONSUMER
    assert [(link.context.trace_id, link.context.span_id) for link in batch.links] == [
        (trace_id, produce.context.span_id)
    ]
    assert batch.context.trace_id == trace_id
    assert batch.parent is not None
    assert batch.parent.span_id == produce.context.span_id

    # the sink's datastore calls are children of the batch span
    mongo = [
        s
        for s in spans
        if s.attributes and s.attributes.get("db.system") in ("mongodb",) and s.context.trace_id == trace_id
    ]
    assert mongo, sorted(s.name for s in spans)
    assert {s.parent.span_id for s in mongo if s.parent is not None} == {batch.context.span_id}
    assert any("insert" in s.name for s in mongo), [s.name for s in mongo]

    # the notifier's publish: a child of the batch, its context in the published record's headers
    (publish,) = by_name(spans, f"send {sent}")
    assert publish.kind == SpanKind.PRODUCER
    assert publish.parent is not None
    assert publish.parent.span_id == batch.context.span_id
    carried = tracing.record_context(published.headers)
    assert carried is not None
    assert (carried.trace_id, carried.span_id) == (trace_id, publish.context.span_id)
    # the notifier's own position headers are still there
    assert any(k.startswith("notifier.") for k, _ in published.headers)
