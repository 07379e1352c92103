"""Consumer groups: list, describe, per-partition lag, offset reset."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gateway.api.params import GroupId
from gateway.auth import Admin
from gateway.deps import KafkaDep, LagsDep
from gateway.errors import error_responses
from gateway.ops import groups as ops
from gateway.ops.groups import GroupDetail, GroupList, GroupOffsets, OffsetReset, ResetResult
from gateway.ops.topics import TOPIC_MAX, TOPIC_PATTERN

router = APIRouter(tags=["consumer groups"])


@router.get("/api/v1/consumer-groups", summary="List consumer groups", response_model=GroupList)
async def list_groups(kafka: KafkaDep) -> GroupList:
    return await ops.list_groups(kafka)


@router.get(
    "/api/v1/consumer-groups/{group_id}",
    summary="Describe a group: state, members with their assignment, per-partition committed/end/lag",
    response_model=GroupDetail,
    responses=error_responses(404, 503),
)
async def get_group(kafka: KafkaDep, lags: LagsDep, group_id: GroupId) -> GroupDetail:
    return await ops.describe(kafka, group_id, lags.known())


@router.get(
    "/api/v1/consumer-groups/{group_id}/offsets",
    summary="Per-partition committed offset, end offset and lag (optionally of one topic)",
    response_model=GroupOffsets,
    responses=error_responses(404, 503),
)
async def get_group_offsets(
    kafka: KafkaDep,
    lags: LagsDep,
    group_id: GroupId,
    topic: Annotated[str | None, Query(min_length=1, max_length=TOPIC_MAX, pattern=TOPIC_PATTERN)] = None,
) -> GroupOffsets:
    return await ops.offsets(kafka, group_id, topic, lags.known())


@router.post(
    "/api/v1/consumer-groups/{group_id}/offsets/reset",
    summary="Reset a group's offsets on a topic: earliest / latest / timestamp / offset (group stopped)",
    dependencies=[Admin],
    response_model=ResetResult,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def reset_offsets(kafka: KafkaDep, group_id: GroupId, body: OffsetReset) -> ResetResult:
    return await ops.reset(kafka, group_id, body)
