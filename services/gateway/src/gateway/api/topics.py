"""Topics (list, describe, create) and their records (browse, produce a test message)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

from gateway.api.params import MAX_BROWSE_LIMIT, TOPIC_ADMIN_ERRORS, TopicName
from gateway.auth import Admin
from gateway.deps import KafkaDep, SettingsDep, TopicsDep
from gateway.errors import error_responses
from gateway.ops import browse as messages
from gateway.ops import topics as ops
from gateway.ops.browse import MAX_TIMESTAMP_MS, MessagePage, Produced, ProduceIn
from gateway.ops.topics import TopicCreate, TopicDetail, TopicList

router = APIRouter()


@router.get("/api/v1/topics", tags=["topics"], summary="List topics", response_model=TopicList)
async def list_topics(
    kafka: KafkaDep,
    topics: TopicsDep,
    include_internal: Annotated[bool, Query(description="Also list '__'-prefixed topics")] = False,
) -> TopicList:
    return await ops.list_topics(kafka, topics, include_internal=include_internal)


@router.get(
    "/api/v1/topics/{topic}",
    tags=["topics"],
    summary="Describe a topic: partitions, leaders, replicas, offsets, config",
    response_model=TopicDetail,
    responses=error_responses(404, 422, 503),
)
async def get_topic(kafka: KafkaDep, topics: TopicsDep, topic: TopicName) -> TopicDetail:
    return await ops.describe(kafka, topics, topic)


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
    return await ops.create(kafka, topics, settings, body)


#: The from_end parameter of a browse.
FROM_END = (
    "Newest first: the last `limit` records of every partition (or of `partition`), merged by timestamp, "
    "newest first (ties: partition, then offset descending); the same data gives the same page"
)


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
    timestamp_ms: Annotated[int | None, Query(ge=0, le=MAX_TIMESTAMP_MS, description="Start time")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_BROWSE_LIMIT)] = 50,
    from_end: Annotated[bool, Query(description=FROM_END)] = False,
) -> MessagePage:
    return await messages.browse(
        kafka,
        settings,
        topic,
        partition=partition,
        offset=offset,
        timestamp_ms=timestamp_ms,
        limit=limit,
        from_end=from_end,
    )


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
    return await messages.produce(kafka, topics, topic, body)
