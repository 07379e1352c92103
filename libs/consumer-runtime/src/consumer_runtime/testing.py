"""Helpers for tests of any service: unique names, producing, waiting until a condition holds, clean-up."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from platform_events import TOPICS

from consumer_runtime import tracing
from consumer_runtime.settings import KafkaSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

#: default topic name → the environment variable that renames it (from the registry)
TOPIC_ENV: dict[str, str] = {name: spec.env_var for name, spec in TOPICS.items() if spec.env_var}


def topic_env(rename: Callable[[str], str]) -> dict[str, str]:
    """The environment that gives every platform topic a name of a run's own: ``rename(default)``."""
    return {var: rename(default) for default, var in TOPIC_ENV.items()}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class KafkaNames:
    """A topic and a group of one test's own, so tests never see each other's records."""

    topic: str
    group: str

    @property
    def dlq(self) -> str:
        return f"{self.topic}.dlq"

    @classmethod
    def fresh(cls, prefix: str = "t") -> KafkaNames:
        return cls(topic=unique(f"{prefix}-topic"), group=unique(f"{prefix}-group"))


def fast_settings(bootstrap: str, group: str = "", **overrides: Any) -> KafkaSettings:
    """Settings tuned for fast tests against the local broker (no idempotent producer there)."""
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "kafka_consumer_group": group,
        "kafka_enable_idempotence": False,
        "kafka_session_timeout_ms": 6000,
        "kafka_heartbeat_interval_ms": 1000,
        "mq_batch_timeout_ms": 100,
        "retry_backoff_initial_ms": 50,
        "retry_backoff_max_ms": 500,
        "kafka_control_enabled": False,  # tests that need it enable it with a topic of their own
        **overrides,
    }
    return KafkaSettings(**values)


async def produce(
    bootstrap: str,
    topic: str,
    values: Iterable[bytes | None],
    *,
    keys: Sequence[bytes | None] | None = None,
    partition: int | None = None,
) -> list[tuple[int, int]]:
    """Send values (acks=all) and return their (partition, offset) in order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = []
        for i, value in enumerate(values):
            key = keys[i] if keys is not None else None
            futures.append(await producer.send(topic, value=value, key=key, partition=partition))
        metas = await asyncio.gather(*futures)
        return [(md.partition, md.offset) for md in metas]
    finally:
        await producer.stop()


async def wait_until(
    predicate: Callable[[], Any],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "",
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        result = predicate()
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            result = await result
        last = result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or predicate!r}; last={last!r}"
            )
        await asyncio.sleep(interval)


async def read_all(
    bootstrap: str, topic: str, *, expect: int, timeout: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read a topic from the beginning (no group) until ``expect`` records arrived."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:

        async def partitions() -> set[int] | None:
            await consumer.topics()  # refreshes the metadata cache
            found: set[int] | None = consumer.partitions_for_topic(topic)
            return found

        parts: set[int] = await wait_until(
            partitions, timeout=timeout, interval=0.2, what=f"partitions of {topic}"
        )
        consumer.assign([TopicPartition(topic, p) for p in parts])
        await consumer.seek_to_beginning()
        out: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + timeout
        while len(out) < expect and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for msgs in batch.values():
                out.extend(msgs)
        return out
    finally:
        await consumer.stop()


async def delete_topics(bootstrap: str, topics: Sequence[str]) -> None:
    """Best-effort clean-up of a test's own topics (missing ones are fine)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [t for t in topics if t in existing]
        if doomed:
            await admin.delete_topics(doomed)
    except Exception:  # clean-up must never fail a test
        pass
    finally:
        await admin.close()


@contextlib.contextmanager
def captured_spans(service: str = "test") -> Iterator[InMemorySpanExporter]:
    """Tracing on for the block, whatever the environment says, every finished span kept in memory (the
    SDK's ``InMemorySpanExporter``); off again afterwards. Apps, stores and clients made inside the block
    are traced like those of a service started with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    if tracing.is_enabled():
        raise RuntimeError("tracing is already on in this process")
    exporter = InMemorySpanExporter()
    tracing.configure_tracing(service, env={}, processors=[SimpleSpanProcessor(exporter)])
    try:
        yield exporter
    finally:
        tracing.shutdown_tracing()


def http_routes(routes: Iterable[Any], prefix: str = "") -> set[tuple[str, str]]:
    """Every ``(method, path)`` of ``app.routes``, also inside included routers (FastAPI keeps those as lazy
    includes): what a test that must decide every route enumerates."""
    out: set[tuple[str, str]] = set()
    for route in routes:
        if hasattr(route, "original_router"):
            out |= http_routes(route.original_router.routes, prefix + route.include_context.prefix)
        elif getattr(route, "methods", None):
            out |= {(method, prefix + route.path) for method in route.methods}
    return out
