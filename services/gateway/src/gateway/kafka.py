"""The gateway's Kafka clients and the reads and writes :mod:`gateway.ops` builds on: publish, topic and
group metadata, offsets (time search included), group commits, bounded reads. Refusals are
:mod:`gateway.ops.errors` (an unknown topic or group, a group with live members, no fetch answer).

One durable producer (acks=all, compression, batching, retries) and one admin client live for the whole
process; readers (consumers without a group) are created per request and closed at once.

Broker differences handled here (docs/local-servers.md): the end offset of a partition is the high
watermark a fetch response reports (``consumer.highwater``), never ``end_offsets()``, which the local Tansu
broker answers wrongly; ``list_consumer_group_offsets`` is always given ``partitions=``; a metadata request
for an unknown topic may auto-create it, so every name is checked against ``list_topics`` first;
``offsets_for_times`` is checked against the records it points at (Tansu answers offset 0 whatever the
time) and, when wrong, the offset is found by binary search over the log.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError
from consumer_runtime import tracing
from consumer_runtime.dlq import decode_headers
from consumer_runtime.kafka_clients import (
    new_group_consumer,
    reader,
    start_admin,
    start_client,
    start_producer,
)

from gateway.config import GatewaySettings
from gateway.logs import log
from gateway.ops.errors import Conflict, NotFound, Unavailable, unknown

_READ_WAIT_MS = 50


@dataclass(frozen=True, slots=True)
class Sent:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int


def render_value(raw: bytes | None) -> tuple[Any, str]:
    """A record value for JSON output: parsed JSON, else UTF-8 text, else base64 (with its encoding)."""
    if raw is None:
        return None, "null"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"
    try:
        return json.loads(text), "json"
    except ValueError:
        return text, "text"


def render_key(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode("ascii")


def record_dict(msg: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    value, encoding = render_value(msg.value)
    return {
        "topic": msg.topic,
        "partition": msg.partition,
        "offset": msg.offset,
        "timestamp_ms": msg.timestamp,
        "key": render_key(msg.key),
        "headers": decode_headers(msg.headers),
        "value": value,
        "value_encoding": encoding,
        "size": len(msg.value or b""),
    }


def decode_assignment(raw: bytes | None) -> list[dict[str, Any]]:
    """A member's assignment bytes (consumer protocol) → ``[{"topic", "partitions"}]`` ([] when absent)."""
    if not raw:
        return []
    try:
        decoded = ConsumerProtocolMemberAssignment.decode(raw)
    except Exception:
        return []
    return [{"topic": t, "partitions": sorted(p)} for t, p in decoded.assignment]


def newest_first(messages: Iterable[ConsumerRecord[bytes, bytes]]) -> list[ConsumerRecord[bytes, bytes]]:
    """Records merged newest first: by timestamp, descending; ties by partition (ascending), then offset
    (descending). A total order on (partition, offset), so the same data always gives the same page."""
    return sorted(messages, key=lambda m: (-m.timestamp, m.partition, -m.offset))


class KafkaGateway:
    """The gateway's Kafka clients and the Kafka requests the operations are built on."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Connect lazily-tolerant: a broker that is down at start-up does not stop the gateway."""
        with contextlib.suppress(KafkaError, OSError):
            await self.admin()
        with contextlib.suppress(KafkaError, OSError):
            await self.producer()

    async def close(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
            admin, self._admin = self._admin, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()

    async def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            async with self._lock:
                if self._producer is None:
                    self._producer = await start_producer(self.settings)
        return self._producer

    async def admin(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            async with self._lock:
                if self._admin is None:
                    self._admin = await start_admin(self.settings, request_timeout_ms=10_000)
        return self._admin

    def reader(self) -> contextlib.AbstractAsyncContextManager[AIOKafkaConsumer]:
        """A group-less consumer for one request (browse, offsets), closed afterwards."""
        return reader(self.settings, fetch_max_wait_ms=_READ_WAIT_MS, request_timeout_ms=10_000)

    async def ping(self) -> None:
        """Readiness: the broker answers a metadata request."""
        admin = await self.admin()
        await asyncio.wait_for(admin.list_topics(), 3.0)

    # ------------------------------------------------------------------ publish
    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> Sent:
        """Send one record and wait for the broker's acknowledgement (acks=all).

        With tracing on, the send is a PRODUCER span of the request and the record carries its W3C context
        (``traceparent``/``tracestate``) unless ``headers`` already hold one (a test message's own)."""
        producer = await self.producer()
        with tracing.publish_span(topic) as trace_headers:
            if trace_headers and not tracing.has_trace_headers(headers):
                headers = [*(headers or ()), *trace_headers]
            meta = await producer.send_and_wait(
                topic, value=value, key=key, headers=list(headers) if headers else None, partition=partition
            )
        return Sent(meta.topic, meta.partition, meta.offset, meta.timestamp)

    async def send_many(
        self, topic: str, records: Sequence[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]
    ) -> list[Sent]:
        """Send a batch (key, value, headers) in order; returns once every record is acknowledged."""
        producer = await self.producer()
        futures = [await producer.send(topic, value=v, key=k, headers=h or None) for k, v, h in records]
        metas = await asyncio.gather(*futures)
        return [Sent(m.topic, m.partition, m.offset, m.timestamp) for m in metas]

    # ------------------------------------------------------------------ topics
    async def list_topics(self) -> list[str]:
        admin = await self.admin()
        return sorted(await admin.list_topics())

    async def require_topic(self, topic: str) -> None:
        if topic not in set(await self.list_topics()):
            raise unknown("topic", f"unknown topic {topic!r}")

    async def partitions(self, topic: str) -> list[dict[str, Any]]:
        """Partition metadata of an existing topic (404 for an unknown one: never auto-create)."""
        await self.require_topic(topic)
        admin = await self.admin()
        described = await admin.describe_topics([topic])
        if not described or described[0].get("error_code"):
            raise unknown("topic", f"unknown topic {topic!r}")
        return sorted(described[0]["partitions"], key=lambda p: p["partition"])

    async def partition_counts(self, names: Sequence[str]) -> dict[str, list[int]]:
        """The partition numbers of each named (existing) topic."""
        if not names:
            return {}
        admin = await self.admin()
        return {
            d["topic"]: [p["partition"] for p in d.get("partitions", [])]
            for d in await admin.describe_topics(list(names))
        }

    async def topic_config(self, topic: str) -> dict[str, str | None]:
        admin = await self.admin()
        try:
            responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        except KafkaError as exc:
            log.warning("describe_configs failed", topic=topic, error=repr(exc))
            return {}
        config: dict[str, str | None] = {}
        for response in responses:
            for resource in response.resources:
                for entry in resource[4]:
                    config[str(entry[0])] = entry[1]
        return config

    async def create_topic(
        self, name: str, partitions: int, replication_factor: int, config: dict[str, str]
    ) -> None:
        admin = await self.admin()
        if name in set(await admin.list_topics()):
            raise Conflict("topic_exists", f"topic {name!r} already exists", field="name")
        try:
            await admin.create_topics(
                [NewTopic(name, partitions, replication_factor, topic_configs=dict(config))]
            )
        except TopicAlreadyExistsError:
            raise Conflict("topic_exists", f"topic {name!r} already exists", field="name") from None

    async def ensure_topic(self, name: str, partitions: int, config: dict[str, str] | None = None) -> bool:
        """Create ``name`` if missing (safe to race); True when this call created it."""
        admin = await self.admin()
        if name in set(await admin.list_topics()):
            return False
        try:
            await admin.create_topics(
                [
                    NewTopic(
                        name, partitions, self.settings.kafka_topic_replication, topic_configs=config or {}
                    )
                ]
            )
        except TopicAlreadyExistsError:
            return False
        return True

    # ------------------------------------------------------------------ offsets
    async def end_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """High watermark of each partition, as a fetch response reports it."""
        wanted = sorted(set(tps))
        if not wanted:
            return {}
        async with self.reader() as consumer:
            return await self._highwaters(consumer, wanted)

    async def _highwaters(
        self, consumer: AIOKafkaConsumer, wanted: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        consumer.assign(wanted)
        # Start near the end so a fetch carries little data; Tansu's end_offsets() is at most the true end.
        with contextlib.suppress(KafkaError):
            near_end = await consumer.end_offsets(wanted)
            for tp, off in near_end.items():
                consumer.seek(tp, max(0, off - 1))
        deadline = time.monotonic() + 10.0
        result: dict[TopicPartition, int] = {}
        while True:
            await consumer.getmany(*wanted, timeout_ms=_READ_WAIT_MS * 2, max_records=1)
            for tp in wanted:
                high = consumer.highwater(tp)
                if high is not None:
                    result[tp] = high
            if len(result) == len(wanted):
                return result
            if time.monotonic() > deadline:
                missing = [f"{tp.topic}[{tp.partition}]" for tp in wanted if tp not in result]
                raise Unavailable(
                    "kafka_unavailable", f"no fetch response for {', '.join(missing)}", service="kafka"
                )

    async def beginning_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        wanted = sorted(set(tps))
        if not wanted:
            return {}
        async with self.reader() as consumer:
            consumer.assign(wanted)
            return dict(await consumer.beginning_offsets(wanted))

    async def offsets_for_timestamp(
        self, tps: Sequence[TopicPartition], timestamp_ms: int
    ) -> dict[TopicPartition, int]:
        """Earliest offset whose timestamp is ≥ ``timestamp_ms`` per partition (the end when none is)."""
        async with self.reader() as consumer:
            consumer.assign(list(tps))
            ends = await self._highwaters(consumer, list(tps))
            starts = await consumer.beginning_offsets(list(tps))
            return await self._offsets_by_time(consumer, list(tps), timestamp_ms, starts, ends)

    async def _record_at(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int
    ) -> ConsumerRecord[bytes, bytes] | None:
        """The first record at or after ``offset`` (None at the end of the partition)."""
        consumer.seek(tp, offset)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=_READ_WAIT_MS * 2, max_records=1)
            for msgs in batch.values():
                if msgs:
                    return msgs[0]
            high = consumer.highwater(tp)
            if high is not None and offset >= high:
                return None
        return None

    async def _is_first_at(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, start: int, timestamp_ms: int
    ) -> bool:
        """Check a ListOffsets answer: the record there is at/after the time, the one before is not."""
        rec = await self._record_at(consumer, tp, offset)
        if rec is None or rec.offset != offset or rec.timestamp < timestamp_ms:
            return False
        if offset <= start:
            return True
        before = await self._record_at(consumer, tp, offset - 1)
        return before is not None and before.offset == offset - 1 and before.timestamp < timestamp_ms

    async def _search_timestamp(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, lo: int, hi: int, timestamp_ms: int
    ) -> int:
        """Binary search for the first offset in [lo, hi) with timestamp ≥ target (hi when none)."""
        while lo < hi:
            mid = (lo + hi) // 2
            rec = await self._record_at(consumer, tp, mid)
            if rec is None or rec.timestamp >= timestamp_ms:
                hi = mid
            else:
                lo = rec.offset + 1
        return lo

    # ------------------------------------------------------------------ groups
    async def group_ids(self) -> list[tuple[str, str]]:
        """``(group_id, protocol_type)`` of every group the broker knows, sorted."""
        admin = await self.admin()
        return sorted({(str(g[0]), str(g[1])) for g in await admin.list_consumer_groups()})

    async def require_group(self, group_id: str) -> None:
        if group_id not in {g for g, _ in await self.group_ids()}:
            raise unknown("group", f"unknown consumer group {group_id!r}")

    async def describe_group(self, group_id: str) -> dict[str, Any]:
        """State, protocol and members (with their decoded assignment) of one group; Dead when unknown."""
        admin = await self.admin()
        # One group per request: noida-db breaks on several ids in one DescribeGroups call.
        responses = await admin.describe_consumer_groups([group_id])
        for response in responses:
            for group in response.groups:
                _error_code, gid, state, protocol_type, protocol, members = group[:6]
                if gid != group_id:
                    continue
                return {
                    "group_id": gid,
                    "state": state,
                    "protocol_type": protocol_type,
                    "protocol": protocol,
                    "members": [
                        {
                            "member_id": m[0],
                            "client_id": m[1],
                            "client_host": m[2],
                            "assignment": decode_assignment(m[-1]),
                        }
                        for m in members
                    ],
                }
        return {"group_id": group_id, "state": "Dead", "members": [], "protocol_type": "", "protocol": ""}

    async def group_offsets(self, group_id: str, topics: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Committed offset, end offset and lag for every partition the group has committed on.

        Without ``topics`` every topic is asked (``partitions=`` is required by the local broker, and a
        group's topics cannot be learnt otherwise when it has no members); only partitions with a commit
        are reported then.
        """
        admin = await self.admin()
        existing = set(await admin.list_topics())
        names = [t for t in (topics or sorted(existing)) if t in existing]
        if not names:
            return []
        tps: list[TopicPartition] = []
        for described in await admin.describe_topics(names):
            for p in described.get("partitions", []):
                tps.append(TopicPartition(described["topic"], p["partition"]))
        committed = await admin.list_consumer_group_offsets(group_id, partitions=tps)
        explicit = topics is not None
        keep = sorted(
            (tp for tp in tps if explicit or (tp in committed and committed[tp].offset >= 0)),
            key=lambda t: (t.topic, t.partition),
        )
        ends = await self.end_offsets(keep)
        out = []
        for tp in keep:
            meta = committed.get(tp)
            offset = meta.offset if meta is not None and meta.offset >= 0 else None
            end = ends.get(tp)
            out.append(
                {
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "committed": offset,
                    "end_offset": end,
                    "lag": max(0, end - offset) if offset is not None and end is not None else None,
                }
            )
        return out

    async def commit_as_admin(self, group_id: str, targets: dict[TopicPartition, int]) -> None:
        """Commit for an empty group without joining it (the broker refuses this while it has members)."""
        consumer = new_group_consumer(self.settings, group_id=group_id)
        await start_client(consumer, consumer.start, consumer.stop)
        try:
            consumer.assign(list(targets))
            await consumer.commit(dict(targets))
        except CommitFailedError:
            raise Conflict(
                "group_active",
                f"consumer group {group_id!r} gained members meanwhile: the broker refused the commit",
            ) from None
        finally:
            await consumer.stop()

    async def commit_as_member(self, group_id: str, topic: str, targets: dict[TopicPartition, int]) -> None:
        """evict_stale: join the group; only if this member receives *every* partition of the topic (so no
        live member holds any) commit as the group's member, then leave. Stale members that no longer
        heartbeat are evicted by the rebalance this join causes."""
        s = self.settings
        consumer = new_group_consumer(s, topic, group_id=group_id, fetch_max_wait_ms=_READ_WAIT_MS)
        await start_client(consumer, consumer.start, consumer.stop)
        try:
            consumer.pause(*consumer.assignment())
            deadline = time.monotonic() + s.offset_reset_join_timeout_s
            all_parts = {TopicPartition(topic, p["partition"]) for p in await self.partitions(topic)}
            while time.monotonic() < deadline:
                await consumer.getmany(timeout_ms=200, max_records=1)
                mine = set(consumer.assignment())
                consumer.pause(*mine)
                if mine == all_parts:
                    break
            mine = set(consumer.assignment())
            if mine != all_parts:
                raise Conflict(
                    "group_active",
                    f"consumer group {group_id!r} has live members holding partitions "
                    f"{sorted(tp.partition for tp in all_parts - mine)} of {topic!r}: stop them first",
                )
            try:
                await consumer.commit(dict(targets))
            except CommitFailedError:
                raise Conflict("group_active", f"group {group_id!r} rebalanced during the reset") from None
        finally:
            await consumer.stop()

    # ------------------------------------------------------------------ browse
    async def browse(
        self,
        topic: str,
        *,
        partition: int | None,
        offset: int | None,
        timestamp_ms: int | None,
        limit: int,
        from_end: bool = False,
    ) -> dict[str, Any]:
        """Up to ``limit`` records of ``topic`` (one partition or all), from an offset, a timestamp or the
        beginning (in partition, offset order), or (``from_end``) the newest: the last ``limit`` records
        of every partition merged newest first (see :func:`newest_first`)."""
        parts = [p["partition"] for p in await self.partitions(topic)]
        if partition is not None and partition not in parts:
            raise NotFound(
                "partition_not_found", f"topic {topic!r} has no partition {partition}", field="partition"
            )
        tps = [TopicPartition(topic, p) for p in ([partition] if partition is not None else parts)]
        async with self.reader() as consumer:
            consumer.assign(tps)
            ends = await self._highwaters(consumer, tps)
            starts = await consumer.beginning_offsets(tps)
            if timestamp_ms is not None:
                begin = await self._offsets_by_time(consumer, tps, timestamp_ms, starts, ends)
            elif offset is not None:
                begin = {tp: min(max(offset, starts[tp]), ends[tp]) for tp in tps}
            elif from_end:
                begin = {tp: max(starts[tp], ends[tp] - limit) for tp in tps}
            else:
                begin = dict(starts)
            for tp in tps:
                consumer.seek(tp, begin[tp])
            newest = from_end and timestamp_ms is None and offset is None
            # newest: every partition's tail is read whole (at most ``limit`` each), then merged
            messages = await self._read_range(consumer, begin, ends, limit * len(tps) if newest else limit)
        if newest:
            messages = newest_first(messages)[:limit]
        shown: dict[int, list[int]] = {}
        for m in messages:
            shown.setdefault(m.partition, []).append(m.offset)
        return {
            "topic": topic,
            "messages": [record_dict(m) for m in messages],
            "partitions": [
                {
                    "partition": tp.partition,
                    "start_offset": starts[tp],
                    "end_offset": ends[tp],
                    # newest: the page holds [from_offset, next_offset) of this partition's tail
                    "from_offset": min(shown.get(tp.partition, []), default=ends[tp])
                    if newest
                    else begin[tp],
                    "next_offset": max([begin[tp], *(o + 1 for o in shown.get(tp.partition, []))]),
                }
                for tp in tps
            ],
        }

    async def _offsets_by_time(
        self,
        consumer: AIOKafkaConsumer,
        tps: list[TopicPartition],
        timestamp_ms: int,
        starts: dict[TopicPartition, int],
        ends: dict[TopicPartition, int],
    ) -> dict[TopicPartition, int]:
        try:
            found = await consumer.offsets_for_times({tp: timestamp_ms for tp in tps})
        except KafkaError:
            found = {}
        out = {}
        for tp in tps:
            hit = found.get(tp)
            if hit is None and tp in found:
                out[tp] = ends[tp]  # the broker says: no record at or after the time
            elif hit is not None and await self._is_first_at(
                consumer, tp, hit.offset, starts[tp], timestamp_ms
            ):
                out[tp] = hit.offset
            else:  # no usable answer (the local Tansu broker ignores record timestamps): search the log
                out[tp] = await self._search_timestamp(consumer, tp, starts[tp], ends[tp], timestamp_ms)
        return out

    async def _read_range(
        self,
        consumer: AIOKafkaConsumer,
        begin: dict[TopicPartition, int],
        ends: dict[TopicPartition, int],
        limit: int,
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """Read from ``begin`` up to the high watermarks seen at the start, at most ``limit`` records."""
        pending = {tp for tp in begin if begin[tp] < ends[tp]}
        out: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + 10.0
        while pending and len(out) < limit and time.monotonic() < deadline:
            batch = await consumer.getmany(
                *pending, timeout_ms=_READ_WAIT_MS * 2, max_records=limit - len(out)
            )
            for tp, msgs in batch.items():
                for msg in msgs:
                    if msg.offset < ends[tp] and len(out) < limit:
                        out.append(msg)
                if msgs and msgs[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        out.sort(key=lambda m: (m.partition, m.offset))
        return out

    async def fetch_exact(
        self, topic: str, wanted: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], ConsumerRecord[bytes, bytes]]:
        """The records at the given (partition, offset) pairs; missing ones are simply absent."""
        by_part: dict[int, set[int]] = {}
        for p, o in wanted:
            by_part.setdefault(p, set()).add(o)
        found: dict[tuple[int, int], ConsumerRecord[bytes, bytes]] = {}
        async with self.reader() as consumer:
            tps = [TopicPartition(topic, p) for p in by_part]
            consumer.assign(tps)
            ends = await self._highwaters(consumer, tps)
            for tp in tps:
                offsets = sorted(o for o in by_part[tp.partition] if o < ends[tp])
                if not offsets:
                    continue
                consumer.seek(tp, offsets[0])
                remaining = set(offsets)
                deadline = time.monotonic() + 10.0
                while remaining and time.monotonic() < deadline:
                    batch = await consumer.getmany(tp, timeout_ms=_READ_WAIT_MS * 2, max_records=500)
                    msgs = batch.get(tp, [])
                    for msg in msgs:
                        if msg.offset in remaining:
                            found[(tp.partition, msg.offset)] = msg
                            remaining.discard(msg.offset)
                    if (msgs and msgs[-1].offset + 1 >= ends[tp]) or await consumer.position(tp) >= ends[tp]:
                        break
                    if msgs and remaining and min(remaining) > msgs[-1].offset + 500:
                        consumer.seek(tp, min(remaining))
        return found
