"""Records of a topic: browse (from an offset, a time, the start or the end; bounded) and produce one."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from platform_events import EventDecodeError, decode, find_spec, is_dlq_topic
from pydantic import BaseModel, Field

from gateway.config import GatewaySettings
from gateway.kafka import KafkaGateway
from gateway.ops.errors import Invalid, NotFound
from gateway.ops.topics import Topics

#: The latest record timestamp (epoch ms) accepted anywhere: 9999-12-31T23:59:59.999Z.
MAX_TIMESTAMP_MS = 253_402_300_799_999


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


async def browse(
    kafka: KafkaGateway,
    settings: GatewaySettings,
    topic: str,
    *,
    partition: int | None = None,
    offset: int | None = None,
    timestamp_ms: int | None = None,
    limit: int,
    from_end: bool = False,
) -> MessagePage:
    """Up to ``limit`` (capped by ``browse_max_messages``) records of one partition or all, from
    ``offset`` or ``timestamp_ms`` (not both), the beginning, or the newest ``limit`` across the chosen
    partitions, newest first (``from_end``)."""
    if offset is not None and timestamp_ms is not None:
        raise Invalid("validation_error", "give offset or timestamp_ms, not both", field="timestamp_ms")
    page = await kafka.browse(
        topic,
        partition=partition,
        offset=offset,
        timestamp_ms=timestamp_ms,
        limit=min(limit, settings.browse_max_messages),
        from_end=from_end,
    )
    return MessagePage(**page)


def _encode(value: Any) -> bytes:
    """A string is sent as its text, anything else as JSON."""
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, ensure_ascii=False).encode()


async def produce(kafka: KafkaGateway, topics: Topics, topic: str, body: ProduceIn) -> Produced:
    """Send one record; on a platform topic the value must be its event (unless ``validate`` is false)."""
    parts = [p["partition"] for p in await kafka.partitions(topic)]
    if body.partition is not None and body.partition not in parts:
        raise NotFound(
            "partition_not_found", f"topic {topic!r} has no partition {body.partition}", field="partition"
        )
    raw = _encode(body.value)
    spec = find_spec(topic, topics)
    if body.validate_event and spec is not None and not is_dlq_topic(topic):
        try:
            decode(spec, raw)
        except EventDecodeError as exc:
            raise Invalid(
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
