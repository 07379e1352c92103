"""Topics: list (with partition counts and registry names), describe (partitions, offsets, config), create."""

from __future__ import annotations

import re
from typing import Annotated, Any

from aiokafka import TopicPartition
from platform_events import DLQ_SUFFIX, TopicSpec, find_spec, is_dlq_topic, validate_topic_name
from pydantic import BaseModel, Field, field_validator

from gateway.config import GatewaySettings
from gateway.kafka import KafkaGateway
from gateway.logs import log

Topics = dict[str, TopicSpec[Any]]

#: A Kafka topic name (what the routes' path parameters and bodies accept).
TOPIC_PATTERN = r"^[A-Za-z0-9._-]+$"
TOPIC_MAX = 249

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

    name: Annotated[str, Field(min_length=1, max_length=TOPIC_MAX - len(DLQ_SUFFIX))]
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


def platform_topic(topics: Topics, name: str) -> tuple[str | None, TopicSpec[Any] | None]:
    """The registry key and spec of ``name`` when it is one of the platform's topics (or its DLQ)."""
    spec = find_spec(name, topics)
    if spec is None:
        return None, None
    default = next(k for k, v in topics.items() if v.name == spec.name)
    return default, spec


async def list_topics(kafka: KafkaGateway, topics: Topics, *, include_internal: bool = False) -> TopicList:
    names = [n for n in await kafka.list_topics() if include_internal or not n.startswith("__")]
    counts = await kafka.partition_counts(names)
    return TopicList(
        topics=[
            TopicSummary(
                name=n,
                partitions=len(counts.get(n, [])),
                is_dlq=is_dlq_topic(n),
                platform_topic=platform_topic(topics, n)[0],
            )
            for n in names
        ]
    )


async def describe(kafka: KafkaGateway, topics: Topics, topic: str) -> TopicDetail:
    """Partitions (leader, replicas, ISR, offsets), registry description and config of a topic."""
    parts = await kafka.partitions(topic)
    tps = [TopicPartition(topic, p["partition"]) for p in parts]
    ends = await kafka.end_offsets(tps)
    starts = await kafka.beginning_offsets(tps)
    default, spec = platform_topic(topics, topic)
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


async def create(
    kafka: KafkaGateway, topics: Topics, settings: GatewaySettings, body: TopicCreate
) -> TopicDetail:
    """Create a topic (409 ``topic_exists`` when it does) and describe it."""
    await kafka.create_topic(
        body.name,
        body.partitions or settings.kafka_topic_partitions,
        body.replication_factor or settings.kafka_topic_replication,
        body.config,
    )
    log.info("topic created", topic=body.name, partitions=body.partitions, config=body.config)
    return await describe(kafka, topics, body.name)
