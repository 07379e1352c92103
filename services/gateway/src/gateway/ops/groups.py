"""Consumer groups: list, describe (members, assignment, lag), per-partition offsets, offset reset."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from aiokafka import TopicPartition
from pydantic import BaseModel, Field, model_validator

from gateway.kafka import KafkaGateway
from gateway.logs import log
from gateway.ops.browse import MAX_TIMESTAMP_MS
from gateway.ops.errors import Conflict, Invalid, NotFound
from gateway.ops.topics import TOPIC_MAX, TOPIC_PATTERN

#: The group of a search-index rebuild (search_indexer.rebuild): ``<group>-rebuild-<8 hex>``.
REBUILD_GROUP = re.compile(r".+-rebuild-[0-9a-f]{8}")
NO_COMMITS = "no commits yet"
FINISHED_REBUILD = "finished rebuild: no members, kept only as history (its offsets are no one's lag)"


class GroupSummary(BaseModel):
    group_id: str
    protocol_type: str
    state: str
    members: int
    note: str | None = Field(None, description=f'"{NO_COMMITS}", or a finished rebuild\'s group')


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
    note: str | None = Field(None, description=f'"{NO_COMMITS}", or a finished rebuild\'s group')


class GroupOffsets(BaseModel):
    group_id: str
    offsets: list[PartitionLag]
    total_lag: int
    note: str | None = None


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

    topic: Annotated[str, Field(min_length=1, max_length=TOPIC_MAX, pattern=TOPIC_PATTERN)]
    to: Literal["earliest", "latest", "timestamp", "offset"]
    timestamp_ms: Annotated[int, Field(ge=0, le=MAX_TIMESTAMP_MS)] | None = None
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


def _note(group_id: str, members: int, offsets: list[PartitionLag] | None) -> str | None:
    if REBUILD_GROUP.fullmatch(group_id) and members == 0:
        return FINISHED_REBUILD
    if offsets is not None and not any(o.committed is not None for o in offsets):
        return NO_COMMITS
    return None


async def list_groups(kafka: KafkaGateway) -> GroupList:
    out = []
    for group_id, protocol_type in await kafka.group_ids():
        described = await kafka.describe_group(group_id)
        members = len(described["members"])
        out.append(
            GroupSummary(
                group_id=group_id,
                protocol_type=protocol_type,
                state=described["state"],
                members=members,
                note=_note(group_id, members, None),
            )
        )
    return GroupList(groups=out)


def _lags(offsets: list[dict[str, Any]]) -> tuple[list[PartitionLag], int]:
    return [PartitionLag(**o) for o in offsets], sum(o["lag"] or 0 for o in offsets)


async def _require(kafka: KafkaGateway, group_id: str, known: Mapping[str, list[str]]) -> list[str] | None:
    """The topics to report a group on: ``None`` (every committed one) for a group the broker knows; a
    platform group (``known``: each service's group) the broker does not know yet has not committed: its
    topics, each "no commits yet". Any other unknown group is :class:`NotFound`."""
    if group_id in {g for g, _ in await kafka.group_ids()}:
        return None
    if group_id in known:
        return known[group_id]
    raise NotFound("group_not_found", f"unknown consumer group {group_id!r}")


async def describe(
    kafka: KafkaGateway, group_id: str, known: Mapping[str, list[str]] | None = None
) -> GroupDetail:
    """State, members with their assignment, and committed/end/lag of every partition it committed on."""
    topics = await _require(kafka, group_id, known or {})
    described = await kafka.describe_group(group_id)
    offsets, total = _lags(await kafka.group_offsets(group_id, topics=topics))
    if not offsets and known and group_id in known and topics is None:  # known to the broker, no commit
        offsets, total = _lags(await kafka.group_offsets(group_id, topics=known[group_id]))
    note = _note(group_id, len(described["members"]), offsets)
    return GroupDetail(**described, offsets=offsets, total_lag=total, note=note)


async def offsets(
    kafka: KafkaGateway, group_id: str, topic: str | None = None, known: Mapping[str, list[str]] | None = None
) -> GroupOffsets:
    """Committed offset, end offset and lag per partition (of one topic, or every committed one)."""
    topics = await _require(kafka, group_id, known or {})
    if topic is not None:
        await kafka.require_topic(topic)
        topics = [topic]
    rows, total = _lags(await kafka.group_offsets(group_id, topics=topics))
    return GroupOffsets(group_id=group_id, offsets=rows, total_lag=total, note=_note(group_id, 1, rows))


async def reset(kafka: KafkaGateway, group_id: str, body: OffsetReset) -> ResetResult:
    """Move a group's committed offsets on a topic; refused (409) while the group has live members."""
    topic = body.topic
    all_parts = [p["partition"] for p in await kafka.partitions(topic)]
    chosen = sorted(set(body.partitions)) if body.partitions else all_parts
    unknown = [p for p in chosen if p not in all_parts]
    if unknown:
        raise NotFound(
            "partition_not_found", f"topic {topic!r} has no partition {unknown}", field="partitions"
        )
    tps = [TopicPartition(topic, p) for p in chosen]
    described = await kafka.describe_group(group_id)
    members = described["members"]
    if members and not body.evict_stale:
        raise Conflict(
            "group_active",
            f"consumer group {group_id!r} has {len(members)} active member(s) "
            f"(state {described['state']}): stop its consumers first. If they are stopped but the broker "
            "still lists them, retry with evict_stale=true.",
            details=[{"member_id": m["member_id"]} for m in members],
        )
    targets = await _targets(kafka, tps, body)
    before = {
        row["partition"]: row["committed"] for row in await kafka.group_offsets(group_id, topics=[topic])
    }
    result = ResetResult(
        group_id=group_id,
        topic=topic,
        to=body.to,
        dry_run=body.dry_run,
        partitions=[
            {"partition": tp.partition, "previous": before.get(tp.partition), "new": targets[tp]}
            for tp in tps
        ],
    )
    if body.dry_run:
        return result
    if members:
        await kafka.commit_as_member(group_id, topic, targets)
    else:
        await kafka.commit_as_admin(group_id, targets)
    log.info("offsets reset", group=group_id, topic=topic, to=body.to, offsets=result.partitions)
    return result


async def _targets(
    kafka: KafkaGateway, tps: list[TopicPartition], body: OffsetReset
) -> dict[TopicPartition, int]:
    if body.to == "earliest":
        return await kafka.beginning_offsets(tps)
    if body.to == "latest":
        return await kafka.end_offsets(tps)
    if body.to == "timestamp":
        assert body.timestamp_ms is not None
        return await kafka.offsets_for_timestamp(tps, body.timestamp_ms)
    offset = body.offset
    assert offset is not None
    starts = await kafka.beginning_offsets(tps)
    ends = await kafka.end_offsets(tps)
    for tp in tps:
        if not starts[tp] <= offset <= ends[tp]:
            raise Invalid(
                "offset_out_of_range",
                f"offset {offset} is outside partition {tp.partition}'s range [{starts[tp]}, {ends[tp]}]",
                field="offset",
            )
    return dict.fromkeys(tps, offset)
