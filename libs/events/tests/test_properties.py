"""Property tests: every model round-trips through the codec; bad input only ever raises EventDecodeError."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from platform_events import (
    CHATBOT_ISSUES,
    LOG_EVENTS,
    MAX_ID_CHARS,
    MAX_ISSUE_ID_CHARS,
    MESSAGES_CREATED,
    MESSAGES_DELETED,
    MESSAGES_UPDATED,
    NOTIFICATIONS_SENT,
    TOPICS,
    USERS_ACTIVITY,
    EventDecodeError,
    FactoryIssueEvent,
    MessageCreatedEvent,
    MessageCreatedPayload,
    MessageDeletedEvent,
    MessageDeletedPayload,
    MessageUpdatedEvent,
    MessageUpdatedPayload,
    ModeType,
    NotificationSentEvent,
    ProcessType,
    TopicSpec,
    UserActivityEvent,
    WideLogEvent,
    decode,
    decode_message_event,
    encode,
    encode_key,
)

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------------------------------------ strategies
HANGUL = st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3)
ANY_CHAR = st.characters(codec="utf-8")  # every code point except surrogates
korean_text = st.text(st.one_of(HANGUL, ANY_CHAR), max_size=40)
plain_korean = st.text(st.one_of(HANGUL, st.sampled_from("abc XYZ_-019")), max_size=30)  # nothing to escape


def ids(max_size: int = MAX_ID_CHARS) -> st.SearchStrategy[str]:
    return st.text(st.one_of(HANGUL, ANY_CHAR), min_size=1, max_size=min(max_size, 40)).filter(str.strip)


#: Event times are refused beyond now + MAX_CLOCK_SKEW: the strategies stay a day behind the clock.
LATEST = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=1)
epoch_ms = st.integers(min_value=1, max_value=int(LATEST.replace(tzinfo=UTC).timestamp() * 1000))
aware_datetimes = st.datetimes(
    min_value=datetime(1900, 1, 2),
    max_value=LATEST,
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=9)), timezone(timedelta(hours=-5, minutes=-30))]
    ),
)
any_datetimes = st.one_of(aware_datetimes, st.datetimes(min_value=datetime(1900, 1, 2), max_value=LATEST))

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    korean_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(korean_text, children, max_size=4),
    max_leaves=12,
)

issue_events = st.builds(
    FactoryIssueEvent,
    issue=ids(MAX_ISSUE_ID_CHARS),
    processType=st.sampled_from(ProcessType),  # by alias: hypothesis reads the signature (aliases)
    modeType=st.sampled_from(ModeType),
    modeLogId=ids(MAX_ISSUE_ID_CHARS),
    description=st.none() | korean_text,
    isSolved=st.booleans(),
    timestamp=any_datetimes,
)


@st.composite
def wide_events(draw: st.DrawFn) -> WideLogEvent:
    context = draw(
        st.dictionaries(
            korean_text.filter(lambda k: k not in {"event_id", "timestamp", "service"}),
            json_values,
            max_size=6,
        )
    )
    return WideLogEvent.model_validate(
        {**context, "event_id": draw(ids()), "timestamp": draw(any_datetimes), "service": draw(ids())}
    )


attachments = st.lists(
    st.one_of(korean_text, st.dictionaries(korean_text, json_values, max_size=3)), max_size=3
)
created_payloads = st.builds(
    MessageCreatedPayload,
    message_id=ids(),
    channel_id=ids(),
    author_id=ids(),
    content=korean_text,
    mentions=st.lists(ids(), max_size=4),
    attachments=attachments,
)
updated_payloads = st.builds(
    MessageUpdatedPayload,
    message_id=ids(),
    channel_id=ids(),
    content=korean_text,
    author_id=st.none() | ids(),
    mentions=st.none() | st.lists(ids(), max_size=3),
)
deleted_payloads = st.builds(MessageDeletedPayload, message_id=ids(), channel_id=ids())
created_events = st.builds(
    MessageCreatedEvent,
    event_type=st.just("message.created"),
    event_id=ids(),
    timestamp=epoch_ms,
    payload=created_payloads,
)
updated_events = st.builds(
    MessageUpdatedEvent,
    event_type=st.just("message.updated"),
    event_id=ids(),
    timestamp=epoch_ms,
    payload=updated_payloads,
)
deleted_events = st.builds(
    MessageDeletedEvent,
    event_type=st.just("message.deleted"),
    event_id=ids(),
    timestamp=epoch_ms,
    payload=deleted_payloads,
)
notification_events = st.builds(
    NotificationSentEvent,
    notification_id=ids(),
    event_id=ids(),
    user_id=ids(),
    message_id=ids(),
    channel_id=ids(),
    author_id=ids(),
    title=korean_text,
    body=korean_text,
    created_at=epoch_ms,
)
activity_events = st.builds(
    UserActivityEvent,
    event_id=ids(),
    user_id=ids(),
    activity=ids(),
    timestamp=epoch_ms,
    attributes=st.dictionaries(korean_text, json_values, max_size=4),
)

EVENTS_BY_TOPIC: dict[str, st.SearchStrategy[Any]] = {
    CHATBOT_ISSUES.name: issue_events,
    LOG_EVENTS.name: wide_events(),
    MESSAGES_CREATED.name: created_events,
    MESSAGES_UPDATED.name: updated_events,
    MESSAGES_DELETED.name: deleted_events,
    NOTIFICATIONS_SENT.name: notification_events,
    USERS_ACTIVITY.name: activity_events,
}
topic_and_event = st.sampled_from(sorted(EVENTS_BY_TOPIC)).flatmap(
    lambda name: st.tuples(st.just(TOPICS[name]), EVENTS_BY_TOPIC[name])
)


def test_every_topic_has_a_strategy() -> None:
    assert set(EVENTS_BY_TOPIC) == set(TOPICS)


# ---------------------------------------------------------------------------------------------- round trips
@PROPS
@given(topic_and_event)
def test_encode_decode_round_trip(pair: tuple[TopicSpec[Any], Any]) -> None:
    spec, event = pair
    raw = encode(event)
    decoded = decode(spec, raw)
    assert decoded == event
    assert encode(decoded) == raw  # encoding is canonical
    assert encode_key(spec, decoded) == encode_key(spec, event)
    assert json.loads(raw) == json.loads(raw.decode("utf-8"))  # valid UTF-8 JSON


@PROPS
@given(st.one_of(created_events, updated_events, deleted_events))
def test_message_union_round_trip(event: Any) -> None:
    assert decode_message_event(encode(event)) == event


@PROPS
@given(topic_and_event)
def test_round_trip_through_python_json(pair: tuple[TopicSpec[Any], Any]) -> None:
    # Another producer re-serialising our bytes (ASCII-escaped, spaced) yields the same event.
    spec, event = pair
    reserialised = json.dumps(json.loads(encode(event)), ensure_ascii=True, indent=1).encode()
    assert decode(spec, reserialised) == event


@PROPS
@given(
    st.builds(
        FactoryIssueEvent,
        issue=plain_korean.filter(str.strip),
        processType=st.sampled_from(ProcessType),
        modeType=st.sampled_from(ModeType),
        modeLogId=plain_korean.filter(str.strip),
        description=plain_korean,
    )
)
def test_korean_is_never_escaped(event: FactoryIssueEvent) -> None:
    raw = encode(event)
    assert b"\\u" not in raw
    assert event.process_type.value.encode() in raw
    assert event.mode_type.value.encode() in raw
    assert f'"description":"{event.description}"'.encode() in raw


@PROPS
@given(any_datetimes)
def test_timestamps_round_trip_as_utc_z(moment: datetime) -> None:
    data = {
        "issue": "i",
        "processType": "장애접수",
        "modeType": "프레스",
        "modeLogId": "l",
        "timestamp": moment.isoformat(),
    }
    event = decode(CHATBOT_ISSUES, json.dumps(data).encode())
    expected = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    assert event.timestamp == expected  # naive = UTC; offsets converted
    assert event.timestamp.tzinfo is UTC
    assert json.loads(encode(event))["timestamp"].endswith("Z")


@PROPS
@given(any_datetimes, st.booleans())
def test_missing_timestamp_is_the_receive_time(received: datetime, explicit_null: bool) -> None:
    data: dict[str, Any] = {"issue": "i", "processType": "정기점검", "modeType": "용접기", "modeLogId": "l"}
    if explicit_null:
        data["timestamp"] = None
    event = decode(CHATBOT_ISSUES, json.dumps(data).encode(), received_at=received)
    assert event.timestamp == (received.replace(tzinfo=UTC) if received.tzinfo is None else received)


# ----------------------------------------------------------------------------------------------- rejections
ALL_SPECS = list(TOPICS.values())
spec_strategy = st.sampled_from(ALL_SPECS)


@PROPS
@given(spec_strategy, st.binary(max_size=200))
def test_random_bytes_only_raise_decode_errors(spec: TopicSpec[Any], data: bytes) -> None:
    outcome: object
    try:
        outcome = decode(spec, data)
    except EventDecodeError as error:  # the only exception allowed
        outcome = error
    if isinstance(outcome, EventDecodeError):
        assert outcome.kind in {"not_json", "not_object", "invalid", "too_large", "not_utf8", "empty"}
        assert outcome.reason
    else:
        assert isinstance(outcome, spec.model)


@PROPS
@given(spec_strategy, json_values.filter(lambda v: not isinstance(v, dict)))
def test_non_objects_are_not_object(spec: TopicSpec[Any], value: Any) -> None:
    with pytest.raises(EventDecodeError) as info:
        decode(spec, json.dumps(value, ensure_ascii=False).encode())
    assert info.value.kind == "not_object"
    assert info.value.field is None


@PROPS
@given(spec_strategy, st.dictionaries(korean_text, json_values, max_size=5))
def test_random_objects_are_invalid_and_name_a_field(spec: TopicSpec[Any], value: dict[str, Any]) -> None:
    with pytest.raises(EventDecodeError) as info:
        decode(spec, json.dumps(value, ensure_ascii=False).encode())
    assert info.value.kind in {"invalid", "too_large"}
    assert info.value.field is not None
    assert info.value.reason.startswith(info.value.field + ": ")


def required_paths(data: dict[str, Any], spec: TopicSpec[Any]) -> list[str]:
    """Wire paths of the required fields (one level into ``payload``)."""
    model = spec.model
    paths = [f.alias or name for name, f in model.model_fields.items() if f.is_required()]
    if "payload" in model.model_fields:
        payload_model = model.model_fields["payload"].annotation
        assert payload_model is not None
        paths += [f"payload.{name}" for name, f in payload_model.model_fields.items() if f.is_required()]
    return [p for p in paths if p.split(".")[-1] in (data["payload"] if p.startswith("payload.") else data)]


def remove(data: dict[str, Any], path: str) -> dict[str, Any]:
    copy = json.loads(json.dumps(data))
    if path.startswith("payload."):
        del copy["payload"][path.removeprefix("payload.")]
    else:
        del copy[path]
    return copy


def replace(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(data))
    if path.startswith("payload."):
        copy["payload"][path.removeprefix("payload.")] = value
    else:
        copy[path] = value
    return copy


@PROPS
@given(topic_and_event, st.data())
def test_missing_required_field_is_named(pair: tuple[TopicSpec[Any], Any], data: st.DataObject) -> None:
    spec, event = pair
    wire = json.loads(encode(event))
    path = data.draw(st.sampled_from(required_paths(wire, spec)))
    with pytest.raises(EventDecodeError) as info:
        decode(spec, json.dumps(remove(wire, path), ensure_ascii=False).encode())
    assert info.value.kind == "invalid"
    assert info.value.field == path
    assert info.value.reason == f"{path}: field required"


# A value of the wrong JSON type for every required field (what each field must never accept).
WRONG_FOR_STRING = st.one_of(
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
WRONG_FOR_EPOCH_MS = st.one_of(
    st.text(max_size=10),
    st.booleans(),
    st.none(),
    st.integers(max_value=0),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(), max_size=2),
)
WRONG_FOR_DATETIME = st.one_of(
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=99_999_999_999),
    st.text(max_size=8).filter(lambda s: not s.strip() or not s[:1].isdigit()),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def wrong_value_for(spec: TopicSpec[Any], path: str) -> st.SearchStrategy[Any]:
    name = path.split(".")[-1]
    if name in {"created_at"} or (
        name == "timestamp" and spec.model not in (FactoryIssueEvent, WideLogEvent)
    ):
        return WRONG_FOR_EPOCH_MS
    if name == "timestamp":  # ISO-8601 or epoch ms (null = receive time for the issue event: not required)
        return WRONG_FOR_DATETIME
    if name == "payload":
        return st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2), st.none())
    return WRONG_FOR_STRING


@PROPS
@given(topic_and_event, st.data())
def test_wrong_types_are_named(pair: tuple[TopicSpec[Any], Any], data: st.DataObject) -> None:
    spec, event = pair
    wire = json.loads(encode(event))
    path = data.draw(st.sampled_from(required_paths(wire, spec)))
    value = data.draw(wrong_value_for(spec, path))
    with pytest.raises(EventDecodeError) as info:
        decode(spec, json.dumps(replace(wire, path, value), ensure_ascii=False).encode())
    assert info.value.kind == "invalid"
    assert info.value.field == path
    assert info.value.reason.startswith(f"{path}: ")


@PROPS
@given(issue_events, st.sampled_from(["processType", "modeType"]), korean_text)
def test_wrong_enum_values_are_named(event: FactoryIssueEvent, field: str, value: str) -> None:
    assume(value not in {*ProcessType, *ModeType})
    wire = json.loads(encode(event))
    wire[field] = value
    with pytest.raises(EventDecodeError) as info:
        decode(CHATBOT_ISSUES, json.dumps(wire, ensure_ascii=False).encode())
    assert info.value.field == field
    choices = ProcessType if field == "processType" else ModeType
    assert info.value.reason.startswith(f"{field}: input should be ")
    assert all(f"'{choice.value}'" in info.value.reason for choice in choices)


@PROPS
@given(
    issue_events,
    st.one_of(
        st.text(max_size=6), st.integers(), st.floats(allow_nan=False), st.lists(st.booleans(), max_size=2)
    ),
)
def test_is_solved_accepts_only_json_booleans(event: FactoryIssueEvent, value: Any) -> None:
    wire = json.loads(encode(event))
    wire["isSolved"] = value
    with pytest.raises(EventDecodeError) as info:
        decode(CHATBOT_ISSUES, json.dumps(wire).encode())
    assert info.value.field == "isSolved"


@PROPS
@given(
    st.sampled_from([MESSAGES_CREATED, MESSAGES_UPDATED, MESSAGES_DELETED]),
    st.one_of(created_events, updated_events, deleted_events),
)
def test_topic_enforces_its_event_type(spec: TopicSpec[Any], event: Any) -> None:
    assume(not isinstance(event, spec.model))
    wire = json.loads(encode(event))
    wire["payload"] = {"author_id": "a", "content": "c", **wire["payload"]}  # only event_type can be wrong
    with pytest.raises(EventDecodeError) as info:
        decode(spec, json.dumps(wire, ensure_ascii=False).encode())
    assert info.value.field == "event_type"
