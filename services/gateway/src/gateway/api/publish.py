"""Publishing: the seed's ``POST /messages`` and the versioned event publish endpoints (app-facing)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from platform_events import (
    MAX_CONTENT_CHARS,
    Attachment,
    EventEncodeError,
    EventModel,
    EventTooLargeError,
    FactoryIssueEvent,
    Id,
    MessageCreatedEvent,
    MessageDeletedEvent,
    MessageEvent,
    MessageUpdatedEvent,
    TopicSpec,
    UserActivityEvent,
    encode,
    new_event_id,
    now_ms,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.deps import KafkaDep, TopicsDep
from gateway.errors import ApiError, error_responses
from gateway.ops.browse import MAX_TIMESTAMP_MS

router = APIRouter()
#: What a publish endpoint can answer besides its success.
PUBLISH_ERRORS = error_responses(401, 413, 422, 503)

Content = Annotated[str, Field(max_length=MAX_CONTENT_CHARS)]

ISSUE_EXAMPLE = {
    "issue": "PRESS_001_20250808_001",
    "processType": "장애접수",
    "modeType": "프레스",
    "modeLogId": "PRESS_LOG_001",
    "description": "100톤 프레스 유압 이상",
    "isSolved": False,
    "timestamp": "2025-08-08T17:05:37.123Z",
}
MESSAGE_EXAMPLE: dict[str, Any] = {
    "channel_id": "ch_dev",
    "author_id": "user_001",
    "content": "프로젝트 배포 완료",
    "mentions": ["user_002"],
    "attachments": [],
}
MESSAGE_EVENT_EXAMPLE = {
    "event_type": "message.created",
    "event_id": "evt_001",
    "timestamp": 1697234567890,
    "payload": {"message_id": "msg_001", **MESSAGE_EXAMPLE},
}


class NewMessage(BaseModel):
    """A message to create (``message_id`` is generated when absent)."""

    model_config = ConfigDict(json_schema_extra={"examples": [MESSAGE_EXAMPLE]})

    message_id: Id | None = None
    channel_id: Id
    author_id: Id
    content: Content
    mentions: list[Id] = Field(default_factory=list)
    attachments: list[Attachment] = Field(default_factory=list)


class CreatedMessage(BaseModel):
    """The seed's answer: the message with its ids (plus where Kafka stored the event)."""

    message_id: str
    channel_id: str
    author_id: str
    content: str
    mentions: list[str]
    attachments: list[Any]
    event_id: str
    timestamp: int = Field(description="Event time, epoch milliseconds")
    topic: str
    partition: int
    offset: int


class MessageEdit(BaseModel):
    model_config = {
        "json_schema_extra": {"examples": [{"channel_id": "ch_dev", "content": "배포 완료 (수정)"}]}
    }

    channel_id: Id
    content: Content
    author_id: Id | None = None
    mentions: list[Id] | None = None


class ActivityIn(BaseModel):
    model_config = {
        "json_schema_extra": {
            "examples": [{"user_id": "user_001", "activity": "login", "attributes": {"앱": "웹"}}]
        }
    }

    user_id: Id
    activity: Annotated[str, Field(min_length=1, max_length=128)]
    attributes: dict[str, Any] = Field(default_factory=dict)
    event_id: Id | None = None
    timestamp: Annotated[int, Field(gt=0, le=MAX_TIMESTAMP_MS)] | None = None


class Published(BaseModel):
    """Where the event was stored (acknowledged by all in-sync replicas)."""

    topic: str
    partition: int
    offset: int
    key: str
    event_id: str | None = None
    event: dict[str, Any]


def build(model: type[EventModel], data: dict[str, Any], where: str = "") -> Any:
    """Validate with the platform_events model; a failure is a 422 naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        field = field.removeprefix(where) if where else field
        raise ApiError(422, "validation_error", f"{field}: {first['msg']}", field=field or None) from None


def message_event(model: type[EventModel], event_type: str, payload: dict[str, Any]) -> Any:
    """A new message event around ``payload`` (fresh event_id, now), validated like :func:`build`."""
    return build(
        model,
        {"event_type": event_type, "event_id": new_event_id(), "timestamp": now_ms(), "payload": payload},
    )


async def publish(kafka: KafkaDep, spec: TopicSpec[Any], event: Any) -> Published:
    try:
        value = encode(event)
    except EventTooLargeError as exc:
        raise ApiError(413, "event_too_large", str(exc)) from None
    except EventEncodeError as exc:
        raise ApiError(422, "validation_error", str(exc)) from None
    key = spec.key_for(event)
    sent = await kafka.send(spec.name, value, key=key.encode("utf-8"))
    return Published(
        topic=sent.topic,
        partition=sent.partition,
        offset=sent.offset,
        key=key,
        event_id=getattr(event, "event_id", None),
        event=event.to_dict(),
    )


async def create_message(kafka: KafkaDep, topics: TopicsDep, body: NewMessage) -> CreatedMessage:
    payload = body.model_dump(mode="json")
    payload["message_id"] = body.message_id or f"msg_{uuid.uuid4().hex}"
    event = message_event(MessageCreatedEvent, "message.created", payload)
    published = await publish(kafka, topics["platform.messages.created"], event)
    return CreatedMessage(
        **event.payload.model_dump(mode="json"),
        event_id=event.event_id,
        timestamp=event.timestamp,
        topic=published.topic,
        partition=published.partition,
        offset=published.offset,
    )


@router.post(
    "/messages",
    tags=["seed-compatible"],
    summary="Create a message: publishes message.created keyed by channel_id (seed 003)",
    response_model=CreatedMessage,
    responses=PUBLISH_ERRORS,
)
async def post_message(
    kafka: KafkaDep,
    topics: TopicsDep,
    body: Annotated[NewMessage, Body(openapi_examples={"멘션": {"value": MESSAGE_EXAMPLE}})],
) -> CreatedMessage:
    return await create_message(kafka, topics, body)


@router.post(
    "/api/v1/messages",
    tags=["publish"],
    status_code=202,
    summary="Create a message (message.created, key channel_id)",
    response_model=CreatedMessage,
    responses=PUBLISH_ERRORS,
)
async def post_message_v1(kafka: KafkaDep, topics: TopicsDep, body: NewMessage) -> CreatedMessage:
    return await create_message(kafka, topics, body)


@router.put(
    "/api/v1/messages/{message_id}",
    tags=["publish"],
    status_code=202,
    summary="Edit a message (message.updated with the new content)",
    response_model=Published,
    responses=PUBLISH_ERRORS,
)
async def put_message(
    kafka: KafkaDep,
    topics: TopicsDep,
    message_id: Annotated[str, Path(min_length=1, max_length=128)],
    body: MessageEdit,
) -> Published:
    payload = {"message_id": message_id, **body.model_dump(mode="json", exclude_none=True)}
    event = message_event(MessageUpdatedEvent, "message.updated", payload)
    return await publish(kafka, topics["platform.messages.updated"], event)


@router.delete(
    "/api/v1/messages/{message_id}",
    tags=["publish"],
    status_code=202,
    summary="Delete a message (message.deleted); an app action, not an admin one",
    response_model=Published,
    responses=error_responses(401, 422, 503),
)
async def delete_message(
    kafka: KafkaDep,
    topics: TopicsDep,
    message_id: Annotated[str, Path(min_length=1, max_length=128)],
    channel_id: Annotated[
        str, Query(min_length=1, max_length=128, description="The message's channel (Kafka key)")
    ],
) -> Published:
    payload = {"message_id": message_id, "channel_id": channel_id}
    event = message_event(MessageDeletedEvent, "message.deleted", payload)
    return await publish(kafka, topics["platform.messages.deleted"], event)


@router.post(
    "/api/v1/events/issues",
    tags=["publish"],
    status_code=202,
    summary="Publish a factory issue event to chatbot-issue-events (key = issue)",
    response_model=Published,
    responses=PUBLISH_ERRORS,
)
async def publish_issue(
    kafka: KafkaDep,
    topics: TopicsDep,
    event: Annotated[
        FactoryIssueEvent,
        Body(
            openapi_examples={
                "장애접수": {"summary": "failure report", "value": ISSUE_EXAMPLE},
                "해결": {
                    "summary": "solved (closes the chatbot session)",
                    "value": {**ISSUE_EXAMPLE, "isSolved": True},
                },
            }
        ),
    ],
) -> Published:
    return await publish(kafka, topics["chatbot-issue-events"], event)


@router.post(
    "/api/v1/events/messages",
    tags=["publish"],
    status_code=202,
    summary="Publish a message event as-is (event_type selects platform.messages.created|updated|deleted)",
    response_model=Published,
    responses=PUBLISH_ERRORS,
)
async def publish_message_event(
    kafka: KafkaDep,
    topics: TopicsDep,
    event: Annotated[
        MessageEvent, Body(openapi_examples={"message.created": {"value": MESSAGE_EVENT_EXAMPLE}})
    ],
) -> Published:
    by_type = {
        "message.created": "platform.messages.created",
        "message.updated": "platform.messages.updated",
        "message.deleted": "platform.messages.deleted",
    }
    return await publish(kafka, topics[by_type[event.event_type]], event)


@router.post(
    "/api/v1/events/user-activity",
    tags=["publish"],
    status_code=202,
    summary="Publish a user activity event (key = user_id); event_id and timestamp are generated if absent",
    response_model=Published,
    responses=PUBLISH_ERRORS,
)
async def publish_activity(kafka: KafkaDep, topics: TopicsDep, body: ActivityIn) -> Published:
    event = build(
        UserActivityEvent,
        {
            "event_id": body.event_id or new_event_id(),
            "user_id": body.user_id,
            "activity": body.activity,
            "timestamp": body.timestamp or now_ms(),
            "attributes": body.attributes,
        },
    )
    return await publish(kafka, topics["platform.users.activity"], event)
