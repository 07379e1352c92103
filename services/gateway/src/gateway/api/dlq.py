"""Dead letters: the DLQ topics, their letters with error headers, replay to the original topic."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gateway.api.params import MAX_BROWSE_LIMIT, TOPIC_ADMIN_ERRORS, TopicName
from gateway.auth import Admin
from gateway.deps import KafkaDep, SettingsDep
from gateway.ops import dlq as ops
from gateway.ops.dlq import DeadLetterPage, DlqList, ReplayIn, ReplayResult

router = APIRouter(tags=["dlq"])


@router.get(
    "/api/v1/dlq", summary="Dead-letter topics and how many records each holds", response_model=DlqList
)
async def list_dlq(kafka: KafkaDep) -> DlqList:
    return await ops.list_dlq(kafka)


@router.get(
    "/api/v1/dlq/{topic}/messages",
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
    limit: Annotated[int, Query(ge=1, le=MAX_BROWSE_LIMIT)] = 50,
) -> DeadLetterPage:
    return await ops.dead_letters(kafka, settings, topic, partition=partition, offset=offset, limit=limit)


@router.post(
    "/api/v1/dlq/{topic}/replay",
    summary="Replay selected dead letters (or all) to their original topic, with their original key",
    dependencies=[Admin],
    response_model=ReplayResult,
    responses=TOPIC_ADMIN_ERRORS,
)
async def replay(kafka: KafkaDep, settings: SettingsDep, topic: TopicName, body: ReplayIn) -> ReplayResult:
    return await ops.replay(kafka, settings, topic, body)
