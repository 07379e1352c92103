"""Dead letters: the DLQ topics and their sizes, the letters with their error headers, replay."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from aiokafka import ConsumerRecord, TopicPartition
from consumer_runtime.dlq import DlqHeaders, replay_headers, trace_context
from platform_events import DLQ_SUFFIX, base_topic, is_dlq_topic
from pydantic import BaseModel, Field, model_validator

from gateway.config import GatewaySettings
from gateway.kafka import KafkaGateway
from gateway.logs import log
from gateway.ops.browse import PartitionCursor, browse
from gateway.ops.errors import NotFound

#: Most dead letters one replay request may name.
MAX_REPLAY_REFS = 10_000
#: The replay markers: one record per replayed letter (key ``<dlq>/<partition>/<offset>``), latest wins.
REPLAY_MARKER_CONFIG = {"cleanup.policy": "compact"}

Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


class DlqTopic(BaseModel):
    topic: str
    original_topic: str
    messages: int


class DlqList(BaseModel):
    dlq_topics: list[DlqTopic]


class DeadLetter(BaseModel):
    dlq_topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    value: Any
    value_encoding: str
    original: dict[str, Any] = Field(description="topic, partition, offset, timestamp of the failed record")
    error: dict[str, Any] = Field(description="class, message, stage")
    consumer_group: str | None
    failed_at_ms: int | None
    headers: dict[str, str]
    lineage: dict[str, Any] = Field(
        default_factory=dict,
        description="A re-dead-lettered replay: replayed_from (the earlier letter), replay_count, "
        "first_failure (topic/partition/offset)",
    )
    replayed: dict[str, Any] | None = Field(
        None,
        description="Set once this letter was replayed: count, last replay time and target record, and "
        "outcome (failed_again: the letter it became; else not_dead_lettered)",
    )


class DeadLetterPage(BaseModel):
    dlq_topic: str
    dead_letters: list[DeadLetter]
    partitions: list[PartitionCursor]


class ReplayRef(BaseModel):
    partition: Annotated[int, Field(ge=0)]
    offset: Annotated[int, Field(ge=0)]


class ReplayIn(BaseModel):
    model_config = {
        "json_schema_extra": {"examples": [{"messages": [{"partition": 0, "offset": 3}]}, {"all": True}]}
    }

    messages: Annotated[list[ReplayRef], Field(max_length=MAX_REPLAY_REFS)] | None = None
    all: bool = Field(
        False, description="Every letter not replayed yet (a named letter is always replayed: asked again)"
    )
    again: bool = Field(False, description="With all: also the letters already replayed")

    @model_validator(mode="after")
    def _one(self) -> ReplayIn:
        if self.all == bool(self.messages):
            raise ValueError("give either a non-empty 'messages' list or 'all': true")
        return self


class ReplayResult(BaseModel):
    dlq_topic: str
    replayed: int
    skipped: int = Field(0, description="Letters left out of replay-all because they were replayed before")
    targets: dict[str, int] = Field(description="Records sent per target topic")
    records: list[dict[str, Any]]


def dlq_name(topic: str) -> str:
    """The DLQ of ``topic`` (``topic`` itself when it is one)."""
    return topic if is_dlq_topic(topic) else f"{topic}{DLQ_SUFFIX}"


def replay_target(letter: ConsumerRecord[bytes, bytes], dlq_topic: str) -> str:
    """Where a dead letter goes back to: its ``dlq.original.topic`` header, else the DLQ name minus .dlq."""
    return DlqHeaders.parse(letter.headers).original_topic or dlq_topic.removesuffix(".dlq")


def dead_letter(msg: dict[str, Any]) -> DeadLetter:
    """A browsed DLQ record with its error headers read out."""
    h = DlqHeaders.parse(msg["headers"])
    return DeadLetter(
        dlq_topic=msg["topic"],
        partition=msg["partition"],
        offset=msg["offset"],
        timestamp_ms=msg["timestamp_ms"],
        key=msg["key"],
        value=msg["value"],
        value_encoding=msg["value_encoding"],
        original={
            "topic": h.original_topic or base_topic(msg["topic"]),
            "partition": h.original_partition,
            "offset": h.original_offset,
            "timestamp_ms": h.original_timestamp_ms,
        },
        error={"class": h.error_class, "message": h.error_message, "stage": h.stage},
        consumer_group=h.group,
        failed_at_ms=h.failed_at_ms,
        headers=msg["headers"],
        lineage={"replayed_from": h.replayed_from, "replay_count": h.replay_count, "first_failure": h.origin}
        if h.replayed_from
        else {},
    )


def letter_ref(dlq: str, partition: int, offset: int) -> str:
    """The key of a letter's replay marker, and the ``dlq.replayed.from`` of the records replayed from it."""
    return f"{dlq}/{partition}/{offset}"


async def replay_markers(
    kafka: KafkaGateway, settings: GatewaySettings, dlq: str
) -> dict[str, dict[str, Any]]:
    """The latest replay marker of every replayed letter of ``dlq`` (by :func:`letter_ref`)."""
    topic = settings.kafka_dlq_replay_topic
    if topic not in set(await kafka.list_topics()):
        return {}
    page = await kafka.browse(topic, partition=None, offset=None, timestamp_ms=None, limit=1_000_000)
    out: dict[str, dict[str, Any]] = {}
    for m in page["messages"]:  # partition, offset order: the latest marker of a key wins
        key = m["key"] or ""
        if key.startswith(f"{dlq}/") and isinstance(m["value"], dict):
            out[key] = m["value"]
    return out


async def list_dlq(kafka: KafkaGateway) -> DlqList:
    """Every DLQ topic with the number of records it holds."""
    names = [n for n in await kafka.list_topics() if is_dlq_topic(n)]
    counts = await kafka.partition_counts(names)
    tps = [TopicPartition(name, p) for name, parts in counts.items() for p in parts]
    ends = await kafka.end_offsets(tps)
    starts = await kafka.beginning_offsets(tps)
    return DlqList(
        dlq_topics=[
            DlqTopic(
                topic=name,
                original_topic=base_topic(name),
                messages=sum(ends[tp] - starts[tp] for tp in tps if tp.topic == name),
            )
            for name in names
        ]
    )


async def _failed_again(
    kafka: KafkaGateway, dlq: str, markers: dict[str, dict[str, Any]]
) -> dict[str, DeadLetter]:
    """Replayed letter → the letter its last replay became when that failed again: the letter of this DLQ
    replayed from it (``dlq.replayed.from``) whose original record is the one the marker names (an earlier
    replay's failure does not count). Looked for in the whole DLQ: the later letter is rarely on the same
    page (another partition, a later offset)."""
    whole = await kafka.browse(dlq, partition=None, offset=None, timestamp_ms=None, limit=1_000_000)
    out: dict[str, DeadLetter] = {}
    for message in whole["messages"]:
        letter = dead_letter(message)
        ref = letter.lineage.get("replayed_from")
        if not isinstance(ref, str):
            continue
        record = markers.get(ref, {}).get("record")
        if isinstance(record, dict) and all(letter.original.get(k) == v for k, v in record.items()):
            out[ref] = letter
    return out


async def dead_letters(
    kafka: KafkaGateway,
    settings: GatewaySettings,
    topic: str,
    *,
    partition: int | None = None,
    offset: int | None = None,
    limit: int,
) -> DeadLetterPage:
    """A page of the dead letters of ``topic`` (the DLQ or its original topic)."""
    dlq = dlq_name(topic)
    page = await browse(kafka, settings, dlq, partition=partition, offset=offset, limit=limit)
    letters = [dead_letter(m.model_dump()) for m in page.messages]
    markers = await replay_markers(kafka, settings, dlq)
    replayed = [d for d in letters if letter_ref(dlq, d.partition, d.offset) in markers]
    again = await _failed_again(kafka, dlq, markers) if replayed else {}
    for d in replayed:
        ref = letter_ref(dlq, d.partition, d.offset)
        later = again.get(ref)
        outcome = (
            {"outcome": "failed_again", "letter": {"partition": later.partition, "offset": later.offset}}
            if later is not None
            else {"outcome": "not_dead_lettered"}
        )
        d.replayed = {**markers[ref], **outcome}
    return DeadLetterPage(dlq_topic=dlq, dead_letters=letters, partitions=page.partitions)


async def _chosen(
    kafka: KafkaGateway, settings: GatewaySettings, dlq: str, body: ReplayIn, markers: dict[str, Any]
) -> tuple[list[tuple[int, int]], int]:
    """The (partition, offset) of every letter to replay — the ones named, or (all) the first
    ``dlq_replay_max`` not replayed yet (every one with ``again``) — and how many replay-all skipped."""
    if body.all:
        page = await kafka.browse(dlq, partition=None, offset=None, timestamp_ms=None, limit=1_000_000)
        refs = [(m["partition"], m["offset"]) for m in page["messages"]]
        fresh = [r for r in refs if body.again or letter_ref(dlq, *r) not in markers]
        return fresh[: settings.dlq_replay_max], len(refs) - len(fresh)
    await kafka.require_topic(dlq)
    return sorted({(ref.partition, ref.offset) for ref in body.messages or []}), 0


async def _plan(
    kafka: KafkaGateway, dlq: str, wanted: list[tuple[int, int]]
) -> tuple[dict[str, list[Record]], dict[str, list[dict[str, Any]]]]:
    """The letters grouped by the topic they go back to (every letter and every target must exist)."""
    found = await kafka.fetch_exact(dlq, wanted) if wanted else {}
    missing = [{"partition": p, "offset": o} for p, o in wanted if (p, o) not in found]
    if missing:
        raise NotFound(
            "dead_letter_not_found",
            f"{len(missing)} dead letter(s) not found in {dlq}",
            field="messages",
            details=missing[:50],
        )
    existing = set(await kafka.list_topics())
    by_target: dict[str, list[Record]] = {}
    refs: dict[str, list[dict[str, Any]]] = {}
    for p, o in wanted:
        letter = found[(p, o)]
        target = replay_target(letter, dlq)
        if target not in existing:
            raise NotFound("topic_not_found", f"original topic {target!r} of {dlq}[{p}]@{o} does not exist")
        # the letter's trace context goes along: the replayed record continues the original trace
        headers = replay_headers(dlq, p, o, DlqHeaders.parse(letter.headers))
        headers += trace_context(letter.headers)
        by_target.setdefault(target, []).append((letter.key, letter.value, headers))
        refs.setdefault(target, []).append({"dlq_partition": p, "dlq_offset": o})
    return by_target, refs


async def replay(kafka: KafkaGateway, settings: GatewaySettings, topic: str, body: ReplayIn) -> ReplayResult:
    """Send the chosen dead letters back to their original topics, with their original key and value."""
    dlq = dlq_name(topic)
    markers = await replay_markers(kafka, settings, dlq)
    chosen, skipped = await _chosen(kafka, settings, dlq, body, markers)
    by_target, refs = await _plan(kafka, dlq, chosen)
    records: list[dict[str, Any]] = []
    for target, batch in by_target.items():
        sent = await kafka.send_many(target, batch)
        for ref, s in zip(refs[target], sent, strict=True):
            records.append({**ref, "topic": s.topic, "partition": s.partition, "offset": s.offset})
    await _mark(kafka, settings, dlq, records, markers)
    targets = {t: len(b) for t, b in by_target.items()}
    log.info("dlq replayed", dlq=dlq, replayed=len(records), skipped=skipped, targets=targets)
    return ReplayResult(
        dlq_topic=dlq, replayed=len(records), skipped=skipped, targets=targets, records=records
    )


async def _mark(
    kafka: KafkaGateway,
    settings: GatewaySettings,
    dlq: str,
    records: list[dict[str, Any]],
    markers: dict[str, dict[str, Any]],
) -> None:
    """One marker per replayed letter (after its record is acknowledged): replay-all skips it from now on."""
    await kafka.ensure_topic(settings.kafka_dlq_replay_topic, 1, REPLAY_MARKER_CONFIG)
    batch: list[Record] = []
    now = int(time.time() * 1000)
    for r in records:
        key = letter_ref(dlq, r["dlq_partition"], r["dlq_offset"])
        value = {
            "count": int(markers.get(key, {}).get("count", 0)) + 1,
            "replayed_at_ms": now,
            "record": {"topic": r["topic"], "partition": r["partition"], "offset": r["offset"]},
        }
        batch.append((key.encode(), json.dumps(value).encode(), []))
    if batch:
        await kafka.send_many(settings.kafka_dlq_replay_topic, batch)
