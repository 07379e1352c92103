"""Kafka administration: topics, consumer groups (lag, offset reset), message browser, DLQ."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from aiokafka import TopicPartition
from consumer_runtime.dlq import (
    HEADER_ERROR_CLASS,
    HEADER_ERROR_MESSAGE,
    HEADER_FAILED_AT,
    HEADER_GROUP,
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_STAGE,
    HEADER_TIMESTAMP,
    HEADER_TOPIC,
)
from fastapi import APIRouter, Body, Path, Query
from platform_events import (
    DLQ_SUFFIX,
    EventDecodeError,
    base_topic,
    decode,
    find_spec,
    is_dlq_topic,
    now_ms,
    validate_topic_name,
)
from pydantic import BaseModel, Field, field_validator, model_validator

from gateway.auth import Admin
from gateway.deps import KafkaDep, SettingsDep, TopicsDep
from gateway.errors import ApiError, error_responses
from gateway.kafka import replay_target
from gateway.logs import log

router = APIRouter()

TopicName = Annotated[str, Path(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")]
GroupId = Annotated[str, Path(min_length=1, max_length=255)]
#: What an admin endpoint on one topic (browse, dead letters, replay) can answer besides its success.
TOPIC_ADMIN_ERRORS = error_responses(401, 403, 404, 422, 503)

# Topic configs accepted at creation (value checked by the pattern): the usual kafka-ui set.
_NUM = r"-?[0-9]{1,19}"
TOPIC_CONFIGS: dict[str, str] = {
    "cleanup.policy": r"(delete|compact|compact,delete|delete,compact)",
    "retention.ms": _NUM,
    "retention.bytes": _NUM,
    "segment.ms": _NUM,
    "segment.bytes": _NUM,
    "max.message.bytes": _NUM,
    "min.insync.replicas": _NUM,
    "min.compaction.lag.ms": _NUM,
    "delete.retention.ms": _NUM,
    "compression.type": r"(uncompressed|zstd|lz4|snappy|gzip|producer)",
    "message.timestamp.type": r"(CreateTime|LogAppendTime)",
}


# ============================================================================================ topics
class PartitionInfo(BaseModel):
    partition: int
    leader: int | None
    replicas: list[int]
    isr: list[int]
    start_offset: int | None = None
    end_offset: int | None = None
    messages: int | None = Field(None, description="end_offset - start_offset (compaction may make it fewer)")


class TopicSummary(BaseModel):
    name: str
    partitions: int
    is_dlq: bool
    platform_topic: str | None = Field(
        None, description="Registry name when it is one of the platform's topics"
    )


class TopicList(BaseModel):
    topics: list[TopicSummary]


class TopicDetail(BaseModel):
    name: str
    is_dlq: bool
    platform_topic: str | None = None
    description: str | None = None
    consumer_groups: list[str] = Field(default_factory=list, description="Platform groups that read it")
    partitions: list[PartitionInfo]
    config: dict[str, str | None]


class TopicCreate(BaseModel):
    model_config = {
        "json_schema_extra": {
            "examples": [{"name": "factory.alerts", "partitions": 3, "config": {"retention.ms": "604800000"}}]
        }
    }

    name: Annotated[str, Field(min_length=1, max_length=249 - len(DLQ_SUFFIX))]
    partitions: Annotated[int, Field(ge=1, le=1000)] | None = None
    replication_factor: Annotated[int, Field(ge=1, le=10)] | None = None
    config: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        validate_topic_name(value)
        if value.startswith("__"):
            raise ValueError("names starting with '__' are reserved for Kafka's internal topics")
        return value

    @field_validator("config")
    @classmethod
    def _config(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            pattern = TOPIC_CONFIGS.get(key)
            if pattern is None:
                raise ValueError(f"unsupported topic config {key!r}; supported: {', '.join(TOPIC_CONFIGS)}")
            if not re.fullmatch(pattern, val):
                raise ValueError(f"invalid value {val!r} for {key}")
        return value


def _platform(topics: TopicsDep, name: str) -> tuple[str | None, Any]:
    spec = find_spec(name, topics)
    if spec is None:
        return None, None
    default = next(k for k, v in topics.items() if v.name == spec.name)
    return default, spec


@router.get("/api/v1/topics", tags=["topics"], summary="List topics", response_model=TopicList)
async def list_topics(
    kafka: KafkaDep,
    topics: TopicsDep,
    include_internal: Annotated[bool, Query(description="Also list '__'-prefixed topics")] = False,
) -> TopicList:
    names = [n for n in await kafka.list_topics() if include_internal or not n.startswith("__")]
    counts: dict[str, int] = {}
    if names:
        admin = await kafka.admin()
        for described in await admin.describe_topics(names):
            counts[described["topic"]] = len(described.get("partitions", []))
    return TopicList(
        topics=[
            TopicSummary(
                name=n,
                partitions=counts.get(n, 0),
                is_dlq=is_dlq_topic(n),
                platform_topic=_platform(topics, n)[0],
            )
            for n in names
        ]
    )


async def topic_detail(kafka: KafkaDep, topics: TopicsDep, topic: str) -> TopicDetail:
    parts = await kafka.partitions(topic)
    tps = [TopicPartition(topic, p["partition"]) for p in parts]
    ends = await kafka.end_offsets(tps)
    starts = await kafka.beginning_offsets(tps)
    default, spec = _platform(topics, topic)
    infos = []
    for p in parts:
        tp = TopicPartition(topic, p["partition"])
        start, end = starts.get(tp), ends.get(tp)
        infos.append(
            PartitionInfo(
                partition=p["partition"],
                leader=p.get("leader"),
                replicas=list(p.get("replicas", [])),
                isr=list(p.get("isr", [])),
                start_offset=start,
                end_offset=end,
                messages=(end - start) if start is not None and end is not None else None,
            )
        )
    return TopicDetail(
        name=topic,
        is_dlq=is_dlq_topic(topic),
        platform_topic=default,
        description=spec.description if spec is not None else None,
        consumer_groups=list(spec.consumer_groups) if spec is not None and not is_dlq_topic(topic) else [],
        partitions=infos,
        config=await kafka.topic_config(topic),
    )


@router.get(
    "/api/v1/topics/{topic}",
    tags=["topics"],
    summary="Describe a topic: partitions, leaders, replicas, offsets, config",
    response_model=TopicDetail,
    responses=error_responses(404, 422, 503),
)
async def get_topic(kafka: KafkaDep, topics: TopicsDep, topic: TopicName) -> TopicDetail:
    return await topic_detail(kafka, topics, topic)


@router.post(
    "/api/v1/topics",
    tags=["topics"],
    status_code=201,
    summary="Create a topic (name, partitions, config)",
    dependencies=[Admin],
    response_model=TopicDetail,
    responses=error_responses(401, 403, 409, 422, 503),
)
async def create_topic(
    kafka: KafkaDep, topics: TopicsDep, settings: SettingsDep, body: TopicCreate
) -> TopicDetail:
    await kafka.create_topic(
        body.name,
        body.partitions or settings.kafka_topic_partitions,
        body.replication_factor or settings.kafka_topic_replication,
        body.config,
    )
    log.info("topic created", topic=body.name, partitions=body.partitions, config=body.config)
    return await topic_detail(kafka, topics, body.name)


# ============================================================================================ groups
class GroupSummary(BaseModel):
    group_id: str
    protocol_type: str
    state: str
    members: int


class GroupList(BaseModel):
    groups: list[GroupSummary]


class PartitionLag(BaseModel):
    topic: str
    partition: int
    committed: int | None = Field(description="Next offset the group will read (None: never committed)")
    end_offset: int | None = Field(description="High watermark")
    lag: int | None


class Member(BaseModel):
    member_id: str
    client_id: str
    client_host: str
    assignment: list[dict[str, Any]]


class GroupDetail(BaseModel):
    group_id: str
    state: str
    protocol_type: str
    protocol: str
    members: list[Member]
    offsets: list[PartitionLag]
    total_lag: int


class GroupOffsets(BaseModel):
    group_id: str
    offsets: list[PartitionLag]
    total_lag: int


class OffsetReset(BaseModel):
    model_config = {
        "json_schema_extra": {
            "examples": [
                {"topic": "chatbot-issue-events", "to": "earliest"},
                {"topic": "chatbot-issue-events", "to": "timestamp", "timestamp_ms": 1754672737123},
                {"topic": "chatbot-issue-events", "to": "offset", "offset": 42, "partitions": [0]},
            ]
        }
    }

    topic: Annotated[str, Field(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")]
    to: Literal["earliest", "latest", "timestamp", "offset"]
    timestamp_ms: Annotated[int, Field(ge=0, le=253_402_300_799_999)] | None = None
    offset: Annotated[int, Field(ge=0)] | None = None
    partitions: Annotated[list[Annotated[int, Field(ge=0)]], Field(max_length=1000)] | None = None
    evict_stale: bool = Field(
        False,
        description="The broker lists members that are gone (e.g. a leave it missed): join the group to "
        "evict them; still refused (409) if a live member holds any partition. Causes a rebalance.",
    )
    dry_run: bool = False

    @model_validator(mode="after")
    def _needs(self) -> OffsetReset:
        if self.to == "timestamp" and self.timestamp_ms is None:
            raise ValueError("timestamp_ms is required when to=timestamp")
        if self.to == "offset" and self.offset is None:
            raise ValueError("offset is required when to=offset")
        return self


class ResetResult(BaseModel):
    group_id: str
    topic: str
    to: str
    dry_run: bool
    partitions: list[dict[str, Any]]


@router.get(
    "/api/v1/consumer-groups",
    tags=["consumer groups"],
    summary="List consumer groups",
    response_model=GroupList,
)
async def list_groups(kafka: KafkaDep) -> GroupList:
    return GroupList(groups=[GroupSummary(**g) for g in await kafka.list_groups()])


@router.get(
    "/api/v1/consumer-groups/{group_id}",
    tags=["consumer groups"],
    summary="Describe a group: state, members with their assignment, per-partition committed/end/lag",
    response_model=GroupDetail,
    responses=error_responses(404, 503),
)
async def get_group(kafka: KafkaDep, group_id: GroupId) -> GroupDetail:
    return GroupDetail(**await kafka.describe_group(group_id))


@router.get(
    "/api/v1/consumer-groups/{group_id}/offsets",
    tags=["consumer groups"],
    summary="Per-partition committed offset, end offset and lag (optionally of one topic)",
    response_model=GroupOffsets,
    responses=error_responses(404, 503),
)
async def get_group_offsets(
    kafka: KafkaDep,
    group_id: GroupId,
    topic: Annotated[str | None, Query(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")] = None,
) -> GroupOffsets:
    await kafka.require_group(group_id)
    if topic is not None:
        await kafka.require_topic(topic)
    offsets = await kafka.group_offsets(group_id, topics=[topic] if topic else None)
    return GroupOffsets(
        group_id=group_id,
        offsets=[PartitionLag(**o) for o in offsets],
        total_lag=sum(o["lag"] or 0 for o in offsets),
    )


@router.post(
    "/api/v1/consumer-groups/{group_id}/offsets/reset",
    tags=["consumer groups"],
    summary="Reset a group's offsets on a topic: earliest / latest / timestamp / offset (group stopped)",
    dependencies=[Admin],
    response_model=ResetResult,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def reset_offsets(kafka: KafkaDep, group_id: GroupId, body: OffsetReset) -> ResetResult:
    result = await kafka.reset_offsets(
        group_id,
        body.topic,
        partitions=body.partitions,
        to=body.to,
        timestamp_ms=body.timestamp_ms,
        offset=body.offset,
        evict_stale=body.evict_stale,
        dry_run=body.dry_run,
    )
    return ResetResult(**result)


# ============================================================================================ messages
class BrowsedMessage(BaseModel):
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    headers: dict[str, str]
    value: Any = Field(description="Decoded JSON when the value is JSON, else text, else base64")
    value_encoding: Literal["json", "text", "base64", "null"]
    size: int


class PartitionCursor(BaseModel):
    partition: int
    start_offset: int
    end_offset: int
    from_offset: int
    next_offset: int


class MessagePage(BaseModel):
    topic: str
    messages: list[BrowsedMessage]
    partitions: list[PartitionCursor]


class ProduceIn(BaseModel):
    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "key": "PRESS_001_20250808_001",
                    "value": {
                        "issue": "PRESS_001_20250808_001",
                        "processType": "정기점검",
                        "modeType": "용접기",
                        "modeLogId": "WELD_LOG_7",
                    },
                }
            ]
        }
    }

    key: Annotated[str, Field(max_length=1024)] | None = None
    value: Any = Field(description="JSON value (objects are sent as JSON; a string is sent as its text)")
    headers: dict[str, Annotated[str, Field(max_length=4096)]] = Field(default_factory=dict)
    partition: Annotated[int, Field(ge=0)] | None = None
    validate_event: bool = Field(
        True,
        alias="validate",
        description="Platform topics: refuse a value that does not match the topic's event schema "
        "(set false to send a deliberately bad record, e.g. to exercise the DLQ)",
    )


class Produced(BaseModel):
    topic: str
    partition: int
    offset: int
    timestamp_ms: int


@router.get(
    "/api/v1/topics/{topic}/messages",
    tags=["messages"],
    summary="Browse a topic (or one partition) from an offset or a timestamp; bounded count",
    dependencies=[Admin],
    response_model=MessagePage,
    responses=TOPIC_ADMIN_ERRORS,
)
async def browse(
    kafka: KafkaDep,
    settings: SettingsDep,
    topic: TopicName,
    partition: Annotated[int | None, Query(ge=0, description="One partition (default: all)")] = None,
    offset: Annotated[int | None, Query(ge=0, description="Start offset")] = None,
    timestamp_ms: Annotated[int | None, Query(ge=0, le=253_402_300_799_999, description="Start time")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 50,
    from_end: Annotated[bool, Query(description="The latest `limit` records of each partition")] = False,
) -> MessagePage:
    if offset is not None and timestamp_ms is not None:
        raise ApiError(422, "validation_error", "give offset or timestamp_ms, not both", field="timestamp_ms")
    page = await kafka.browse(
        topic,
        partition=partition,
        offset=offset,
        timestamp_ms=timestamp_ms,
        limit=min(limit, settings.browse_max_messages),
        from_end=from_end,
    )
    return MessagePage(**page)


@router.post(
    "/api/v1/topics/{topic}/messages",
    tags=["messages"],
    status_code=201,
    summary="Produce a test message",
    dependencies=[Admin],
    response_model=Produced,
    responses=error_responses(401, 403, 404, 413, 422, 503),
)
async def produce(
    kafka: KafkaDep, topics: TopicsDep, topic: TopicName, body: Annotated[ProduceIn, Body()]
) -> Produced:
    parts = [p["partition"] for p in await kafka.partitions(topic)]
    if body.partition is not None and body.partition not in parts:
        raise ApiError(
            404,
            "partition_not_found",
            f"topic {topic!r} has no partition {body.partition}",
            field="partition",
        )
    raw = (
        body.value.encode("utf-8")
        if isinstance(body.value, str)
        else json.dumps(body.value, ensure_ascii=False).encode()
    )
    spec = find_spec(topic, topics)
    if body.validate_event and spec is not None and not is_dlq_topic(topic):
        try:
            decode(spec, raw)
        except EventDecodeError as exc:
            raise ApiError(
                422,
                "invalid_event",
                f"not a valid {spec.model.__name__} for {topic}: {exc.reason} (send validate=false to force)",
                field=f"value.{exc.field}" if exc.field else "value",
            ) from None
    sent = await kafka.send(
        topic,
        raw,
        key=body.key.encode("utf-8") if body.key is not None else None,
        headers=[(k, v.encode("utf-8")) for k, v in body.headers.items()],
        partition=body.partition,
    )
    return Produced(
        topic=sent.topic, partition=sent.partition, offset=sent.offset, timestamp_ms=sent.timestamp_ms
    )


# ============================================================================================ DLQ
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

    messages: Annotated[list[ReplayRef], Field(max_length=10_000)] | None = None
    all: bool = False

    @model_validator(mode="after")
    def _one(self) -> ReplayIn:
        if self.all == bool(self.messages):
            raise ValueError("give either a non-empty 'messages' list or 'all': true")
        return self


class ReplayResult(BaseModel):
    dlq_topic: str
    replayed: int
    targets: dict[str, int] = Field(description="Records sent per target topic")
    records: list[dict[str, Any]]


def _dlq_name(topic: str) -> str:
    return topic if is_dlq_topic(topic) else f"{topic}{DLQ_SUFFIX}"


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def dead_letter(msg: dict[str, Any]) -> DeadLetter:
    h = msg["headers"]
    return DeadLetter(
        dlq_topic=msg["topic"],
        partition=msg["partition"],
        offset=msg["offset"],
        timestamp_ms=msg["timestamp_ms"],
        key=msg["key"],
        value=msg["value"],
        value_encoding=msg["value_encoding"],
        original={
            "topic": h.get(HEADER_TOPIC) or base_topic(msg["topic"]),
            "partition": _int(h.get(HEADER_PARTITION)),
            "offset": _int(h.get(HEADER_OFFSET)),
            "timestamp_ms": _int(h.get(HEADER_TIMESTAMP)),
        },
        error={
            "class": h.get(HEADER_ERROR_CLASS),
            "message": h.get(HEADER_ERROR_MESSAGE),
            "stage": h.get(HEADER_STAGE),
        },
        consumer_group=h.get(HEADER_GROUP),
        failed_at_ms=_int(h.get(HEADER_FAILED_AT)),
        headers=h,
    )


@router.get(
    "/api/v1/dlq",
    tags=["dlq"],
    summary="Dead-letter topics and how many records each holds",
    response_model=DlqList,
)
async def list_dlq(kafka: KafkaDep) -> DlqList:
    names = [n for n in await kafka.list_topics() if is_dlq_topic(n)]
    out = []
    if names:
        admin = await kafka.admin()
        tps = [
            TopicPartition(d["topic"], p["partition"])
            for d in await admin.describe_topics(names)
            for p in d["partitions"]
        ]
        ends = await kafka.end_offsets(tps)
        starts = await kafka.beginning_offsets(tps)
        for name in names:
            count = sum(ends[tp] - starts[tp] for tp in tps if tp.topic == name)
            out.append(DlqTopic(topic=name, original_topic=base_topic(name), messages=count))
    return DlqList(dlq_topics=out)


@router.get(
    "/api/v1/dlq/{topic}/messages",
    tags=["dlq"],
    summary="List dead letters with their error headers (topic: the DLQ or its original topic)",
    dependencies=[Admin],
    response_model=DeadLetterPage,
    responses=TOPIC_ADMIN_ERRORS,
)
async def list_dead_letters(
    kafka: KafkaDep,
    settings: SettingsDep,
    topic: TopicName,
    partition: Annotated[int | None, Query(ge=0)] = None,
    offset: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 50,
) -> DeadLetterPage:
    dlq = _dlq_name(topic)
    page = await kafka.browse(
        dlq,
        partition=partition,
        offset=offset,
        timestamp_ms=None,
        limit=min(limit, settings.browse_max_messages),
    )
    return DeadLetterPage(
        dlq_topic=dlq,
        dead_letters=[dead_letter(m) for m in page["messages"]],
        partitions=[PartitionCursor(**p) for p in page["partitions"]],
    )


@router.post(
    "/api/v1/dlq/{topic}/replay",
    tags=["dlq"],
    summary="Replay selected dead letters (or all) to their original topic, with their original key",
    dependencies=[Admin],
    response_model=ReplayResult,
    responses=TOPIC_ADMIN_ERRORS,
)
async def replay(kafka: KafkaDep, settings: SettingsDep, topic: TopicName, body: ReplayIn) -> ReplayResult:
    dlq = _dlq_name(topic)
    if body.all:
        page = await kafka.browse(
            dlq, partition=None, offset=None, timestamp_ms=None, limit=settings.dlq_replay_max
        )
        wanted = [(m["partition"], m["offset"]) for m in page["messages"]]
    else:
        await kafka.require_topic(dlq)
        wanted = sorted({(ref.partition, ref.offset) for ref in body.messages or []})
    found = await kafka.fetch_exact(dlq, wanted) if wanted else {}
    missing = [{"partition": p, "offset": o} for p, o in wanted if (p, o) not in found]
    if missing:
        raise ApiError(
            404,
            "dead_letter_not_found",
            f"{len(missing)} dead letter(s) not found in {dlq}",
            field="messages",
            details=missing[:50],
        )
    existing = set(await kafka.list_topics())
    by_target: dict[str, list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]] = {}
    refs: dict[str, list[dict[str, Any]]] = {}
    for p, o in wanted:
        letter = found[(p, o)]
        target = replay_target(letter, dlq)
        if target not in existing:
            raise ApiError(
                404, "topic_not_found", f"original topic {target!r} of {dlq}[{p}]@{o} does not exist"
            )
        headers = [
            ("dlq.replayed.from", f"{dlq}/{p}/{o}".encode()),
            ("dlq.replayed.at", str(now_ms()).encode()),
        ]
        by_target.setdefault(target, []).append((letter.key, letter.value, headers))
        refs.setdefault(target, []).append({"dlq_partition": p, "dlq_offset": o})
    records: list[dict[str, Any]] = []
    for target, batch in by_target.items():
        sent = await kafka.send_many(target, batch)
        for ref, s in zip(refs[target], sent, strict=True):
            records.append({**ref, "topic": s.topic, "partition": s.partition, "offset": s.offset})
    log.info(
        "dlq replayed", dlq=dlq, replayed=len(records), targets={t: len(b) for t, b in by_target.items()}
    )
    return ReplayResult(
        dlq_topic=dlq,
        replayed=len(records),
        targets={t: len(b) for t, b in by_target.items()},
        records=records,
    )
