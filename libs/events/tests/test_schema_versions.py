"""The published schemas (libs/events/schemas/<topic>/vN.json) and the compatibility gate over them.

- the committed schemas pass the gate (so CI fails on an incompatible model change, like `make lint`);
- the gate fails, naming topic, field and rule, for a model copy with a removed field, a new required field,
  a narrowed Literal/enum, a narrowed limit or a changed type;
- a new version needs a changelog entry (a breaking one an entry that says so);
- events generated from every published version still decode with the current models (Hypothesis).
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from platform_events import (
    MAX_EPOCH_MS,
    TOPICS,
    EventModel,
    EventTimeMillis,
    FactoryIssueEvent,
    Id,
    MessageCreatedEvent,
    MessageCreatedPayload,
    NotificationSentEvent,
    TopicSpec,
    decode,
)
from platform_events import _common as common
from platform_events.asyncapi import asyncapi_document
from platform_events.compat import RULES, check_backward
from platform_events.schemas import (
    changelog_entries,
    check_published,
    compatible_versions,
    load_version,
    main,
    published_versions,
    schemas_dir,
    write_schemas,
)
from pydantic import Field, create_model

REPO = Path(__file__).resolve().parents[3]
ISSUES = "chatbot-issue-events"
CREATED = "platform.messages.created"
NOTIFICATIONS = "platform.notifications.sent"


# ------------------------------------------------------------------------------------ the committed state
def test_the_committed_schemas_pass_the_gate() -> None:
    """The gate of `make lint`, run by the suite as well so CI enforces it."""
    problems = check_published()
    assert problems == [], "\n".join(problems)


def test_every_topic_has_a_v1_baseline() -> None:
    assert schemas_dir() == REPO / "libs" / "events" / "schemas"
    for topic in TOPICS:
        assert published_versions(topic)[0] == 1
        assert load_version(topic, 1)["$schema"].endswith("/2020-12/schema")


def test_check_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"]) == 0
    assert "backward compatible" in capsys.readouterr().out


def test_asyncapi_links_each_channel_to_its_versions() -> None:
    doc = asyncapi_document()
    by_address = {ch["address"]: ch for ch in doc["channels"].values()}
    for topic in TOPICS:
        links = by_address[topic]["x-schema-versions"]
        assert [link["version"] for link in links] == published_versions(topic)
        for link in links:
            assert (REPO / link["schema"]).is_file()
            assert link["readableByCurrentModel"] == (link["version"] in compatible_versions(topic))


# --------------------------------------------------------------------------------- model copies that break
def _spec(topic: str, model: type[EventModel]) -> dict[str, TopicSpec[Any]]:
    """The registry with ``topic`` carrying ``model`` instead."""
    return {**TOPICS, topic: dataclasses.replace(TOPICS[topic], model=model)}


def _without(model: type[EventModel], field: str) -> type[EventModel]:
    """A copy of ``model`` (same name) without ``field``."""
    fields: dict[str, Any] = {
        name: (info.annotation, info) for name, info in model.model_fields.items() if name != field
    }
    copy: type[EventModel] = create_model(  # type: ignore[call-overload]
        model.__name__, __base__=EventModel, __doc__=model.__doc__, **fields
    )
    return copy


@pytest.fixture
def published(tmp_path: Path) -> Path:
    """v1 of every topic, published from today's models into a scratch directory."""
    done, refused = write_schemas(root=tmp_path)
    assert refused == []
    assert len(done) == len(TOPICS)
    return tmp_path


def _gate(root: Path, topics: dict[str, TopicSpec[Any]], changelog: str = "") -> list[str]:
    return check_published(topics, root=root, changelog=changelog)


def test_unchanged_models_pass(published: Path) -> None:
    assert _gate(published, dict(TOPICS)) == []


def test_removed_field_fails(published: Path) -> None:
    problems = _gate(published, _spec(ISSUES, _without(FactoryIssueEvent, "description")))
    assert problems == [
        "chatbot-issue-events: description: field-removed: field `description` was removed: events written "
        "under the old schema carry it and consumers on the new schema would drop it (against v1)"
    ]


def test_renamed_field_fails_with_a_hint(published: Path) -> None:
    class RenamedPayload(EventModel):
        message_id: Id
        channel_id: Id
        writer_id: Id
        content: Annotated[str, Field(max_length=40_000)]
        mentions: list[Id] = Field(default_factory=list)
        attachments: list[Any] = Field(default_factory=list)

    class Renamed(EventModel):
        event_type: Literal["message.created"]
        event_id: Id
        timestamp: EventTimeMillis
        payload: RenamedPayload

    problems = _gate(published, _spec(CREATED, Renamed))
    assert any(
        p.startswith(
            "platform.messages.created: payload.author_id: field-removed: field `author_id` was removed "
            "(renamed to `writer_id`?)"
        )
        for p in problems
    ), problems
    assert any("payload.writer_id: field-required" in p for p in problems), problems


def test_new_required_field_fails(published: Path) -> None:
    class WithPriority(FactoryIssueEvent):
        priority: int

    [problem] = _gate(published, _spec(ISSUES, WithPriority))
    assert problem.startswith(
        "chatbot-issue-events: priority: field-required: `priority` is a new required field"
    )


def test_new_optional_field_is_compatible_but_must_be_published(published: Path) -> None:
    class WithPriority(FactoryIssueEvent):
        priority: int | None = None

    [problem] = _gate(published, _spec(ISSUES, WithPriority))
    assert "the model changed since v1 (backward compatible)" in problem
    assert "chatbot-issue-events/v2.json" in problem


def test_narrowed_enum_fails(published: Path) -> None:
    class OnlyFailures(FactoryIssueEvent):
        process_type: Literal["장애접수"] = Field(alias="processType")  # type: ignore[assignment]

    [problem] = _gate(published, _spec(ISSUES, OnlyFailures))
    assert problem == (
        'chatbot-issue-events: processType: enum-narrowed: value "정기점검" written under the old schema '
        'is no longer accepted (now allowed: "장애접수") (against v1)'
    )


def test_changed_literal_fails(published: Path) -> None:
    class Renamed(NotificationSentEvent):
        event_type: Literal["notification.delivered"] = "notification.delivered"  # type: ignore[assignment]

    problems = _gate(published, _spec(NOTIFICATIONS, Renamed))
    assert any(
        p.startswith("platform.notifications.sent: event_type: enum-narrowed: value") for p in problems
    )
    assert any("event_type: default-changed" in p for p in problems)


def test_narrowed_max_length_fails(published: Path) -> None:
    class ShortPayload(MessageCreatedPayload):
        content: Annotated[str, Field(max_length=1000)]  # type: ignore[assignment]

    class Short(MessageCreatedEvent):
        payload: ShortPayload

    [problem] = _gate(published, _spec(CREATED, Short))
    assert problem == (
        "platform.messages.created: payload.content: max-length-narrowed: maxLength was 40000, now 1000 "
        "(against v1)"
    )


def test_changed_type_fails(published: Path) -> None:
    class StringTime(NotificationSentEvent):
        created_at: str  # type: ignore[assignment]

    [problem] = _gate(published, _spec(NOTIFICATIONS, StringTime))
    assert (
        problem
        == "platform.notifications.sent: created_at: type-changed: was integer, now string (against v1)"
    )


def test_narrowed_bound_fails(published: Path) -> None:
    class Recent(NotificationSentEvent):
        created_at: Annotated[int, Field(strict=True, ge=1_600_000_000_000, le=MAX_EPOCH_MS)]

    [problem] = _gate(published, _spec(NOTIFICATIONS, Recent))
    assert problem.startswith(
        "platform.notifications.sent: created_at: minimum-raised: lower bound was 1, now "
    )


def test_every_gate_message_names_a_documented_rule(published: Path) -> None:
    broken = _spec(ISSUES, _without(FactoryIssueEvent, "mode_type"))
    for problem in _gate(published, broken):
        topic, path, rule, _ = problem.split(": ", 3)
        assert (topic, path, rule) == (ISSUES, "modeType", "field-removed")
        assert rule in RULES


# ---------------------------------------------------------------------------------------------- versions
def _publish_v2(root: Path, topic: str, schema: dict[str, Any]) -> None:
    (root / topic / "v2.json").write_text(json.dumps(schema), encoding="utf-8")


def test_a_new_version_needs_a_changelog_entry(published: Path) -> None:
    class WithPriority(FactoryIssueEvent):
        priority: int | None = None

    topics = _spec(ISSUES, WithPriority)
    done, refused = write_schemas(topics, root=published)
    assert refused == []
    assert done == [
        "chatbot-issue-events: published v2 (backward compatible): add a changelog entry naming "
        "`chatbot-issue-events/v2.json` to docs/contracts.md"
    ]
    [problem] = _gate(published, topics)
    assert problem.startswith("chatbot-issue-events: v2 has no changelog entry")
    changelog = "## Changelog\n\n- 2026-12: `chatbot-issue-events/v2.json` adds the optional `priority`.\n"
    assert _gate(published, topics, changelog) == []
    elsewhere = "## Events\n\n- `chatbot-issue-events/v2.json`\n\n## Changelog\n\n- nothing\n"
    assert _gate(published, topics, elsewhere) != []


def test_an_incompatible_change_is_refused_unless_breaking(published: Path) -> None:
    topics = _spec(ISSUES, _without(FactoryIssueEvent, "description"))
    done, refused = write_schemas(topics, root=published)
    assert done == []
    assert refused == [p for p in _gate(published, topics) if "field-removed" in p]
    assert published_versions(ISSUES, published) == [1]

    done, refused = write_schemas(topics, root=published, breaking=True)
    assert refused == []
    assert done[0].startswith("chatbot-issue-events: published v2 (BREAKING)")
    plain = "## Changelog\n\n- `chatbot-issue-events/v2.json`: drops `description`.\n"
    [problem] = _gate(published, topics, plain)
    assert "v2 is not backward compatible with v1" in problem
    assert "must say BREAKING" in problem
    said = (
        "## Changelog\n\n- BREAKING: `chatbot-issue-events/v2.json` drops\n"
        "  `description`; producers stop sending it.\n"
    )
    assert _gate(published, topics, said) == []
    # a breaking version starts a new compatibility line
    assert compatible_versions(ISSUES, published) == [2]


def test_descriptions_only_are_rewritten_in_place(published: Path) -> None:
    class Documented(FactoryIssueEvent):
        """Another docstring."""

    topics = _spec(ISSUES, Documented)
    [problem] = _gate(published, topics)
    assert problem == "chatbot-issue-events: v1 has stale descriptions: run `make schemas` (no new version)"
    done, _ = write_schemas(topics, root=published)
    assert done == ["chatbot-issue-events: v1: descriptions updated in place"]
    assert published_versions(ISSUES, published) == [1]
    assert _gate(published, topics) == []


def test_missing_gapped_and_stray_versions(published: Path) -> None:
    (published / ISSUES / "v1.json").rename(published / ISSUES / "v3.json")
    (published / "retired.topic").mkdir()
    problems = _gate(published, dict(TOPICS))
    assert "chatbot-issue-events: versions must be v1..vN without gaps, found v3" in problems
    assert "retired.topic: schemas are published for a topic that is not in the registry" in problems
    (published / ISSUES / "v3.json").unlink()
    assert "chatbot-issue-events: no published schema: run `make schemas` to publish v1" in _gate(
        published, dict(TOPICS)
    )


def test_changelog_entries_parse_bullets_with_continuations() -> None:
    text = "# T\n\n## Changelog\n\nintro\n\n- one\n  more\n* two\n\n## After\n\n- not this\n"
    assert changelog_entries(text) == ["one more", "two"]
    assert changelog_entries((REPO / "docs" / "contracts.md").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------- property test
# Events are generated from the published JSON Schema documents themselves. hypothesis-jsonschema would be
# the library for it, but its last release (0.23.1) fails against the Hypothesis this workspace pins
# (``'many' object has no attribute 'more'``), so this is a small generator for the keywords pydantic emits:
# $ref/$defs, anyOf/oneOf/allOf, const/enum, type, properties/required/additionalProperties, items, string
# lengths, pattern and the date-time format, numeric bounds. Every generated event is first checked to be
# valid under the schema with ``jsonschema`` (the generator is sound), then decoded with the current model.

#: FactoryIssueEvent also accepts its Python field names as input (validate_by_name): an unknown key under
#: the wire schema that happens to be one of them is not a wire field, so extra keys avoid them.
_PYTHON_NAMES = frozenset(
    name
    for spec in TOPICS.values()
    for name, info in spec.model.model_fields.items()
    if info.alias and info.alias != name
)
_TEXT = st.characters(codec="utf-8")
_KEYS = st.text(_TEXT, min_size=1, max_size=8).filter(lambda k: k not in _PYTHON_NAMES)
_JSON: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(_TEXT, max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=8,
)
#: Instants whose every offset form stays inside years 1..9999 in UTC (the models refuse others: a
#: datetime cannot hold them, and JSON Schema's date-time format cannot say so).
_DATETIMES = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=9)), timezone(timedelta(hours=-5, minutes=-30))]
    ),
)


def _date_time(value: datetime) -> str:
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _resolve(schema: Any, root: dict[str, Any]) -> Any:
    while isinstance(schema, dict) and "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def strategy(schema: Any, root: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid under ``schema`` (a node of the document ``root``)."""
    schema = _resolve(schema, root)
    if schema is True or schema == {}:
        return _JSON
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            rest = {k: v for k, v in schema.items() if k != key}
            return st.one_of([strategy({**rest, **_resolve(b, root)}, root) for b in schema[key]])
    if "allOf" in schema:
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            merged.update(_resolve(part, root))
        return strategy(merged, root)
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([strategy({**schema, "type": t}, root) for t in kind])
    if kind is None:
        return _JSON
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind in {"integer", "number"}:
        low = schema.get("minimum", None)
        if "exclusiveMinimum" in schema:
            low = schema["exclusiveMinimum"] + 1
        high = schema.get("maximum", None)
        if "exclusiveMaximum" in schema:
            high = schema["exclusiveMaximum"] - 1
        return st.integers(min_value=low, max_value=high)
    if kind == "string":
        if schema.get("format") == "date-time":
            return _DATETIMES.map(_date_time)
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        short = st.text(_TEXT, min_size=low, max_size=min(high, 40) if high is not None else 40)
        longest = (
            st.sampled_from(["a", "가", " x"]).map(lambda u: (u * high)[:high]) if high else st.nothing()
        )
        text = short | longest
        if "pattern" in schema:
            text = text.filter(re.compile(schema["pattern"]).search)
        return text
    if kind == "array":
        return st.lists(strategy(schema.get("items", True), root), max_size=4)
    if kind == "object":
        props: dict[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", []))
        base = st.fixed_dictionaries(
            {name: strategy(sub, root) for name, sub in props.items() if name in required},
            optional={name: strategy(sub, root) for name, sub in props.items() if name not in required},
        )
        extra = schema.get("additionalProperties", True)
        if extra is False:
            return base
        keys = _KEYS.filter(lambda k: k not in props)
        extras = st.dictionaries(keys, strategy(extra, root), max_size=3)
        return st.tuples(extras, base).map(lambda pair: {**pair[0], **pair[1]})
    raise AssertionError(f"no generator for {schema!r}")


#: Published versions the current models must read.
VERSIONS = [(topic, version) for topic in TOPICS for version in compatible_versions(topic)]


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clock rule (no event time ahead of the receiver) is a receive-time rule, not part of the schema:
    put the receiver's clock at the end of time so every schema-valid time is in its past."""
    monkeypatch.setattr(common, "now_ms", lambda: MAX_EPOCH_MS)
    monkeypatch.setattr(common, "utc_now", lambda: common.ms_to_datetime(MAX_EPOCH_MS))


@pytest.mark.usefixtures("frozen_clock")
@pytest.mark.parametrize(("topic", "version"), VERSIONS, ids=[f"{t}-v{v}" for t, v in VERSIONS])
def test_events_of_every_published_version_decode(topic: str, version: int) -> None:
    schema = load_version(topic, version)
    spec = TOPICS[topic]
    validator = jsonschema.Draft202012Validator(schema)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(event=strategy(schema, schema))
    def decodes(event: dict[str, Any]) -> None:
        validator.validate(event)  # the generator only makes events the published version allows
        data = json.dumps(event, ensure_ascii=False).encode()
        if len(data) > spec.model.MAX_BYTES:  # the size limit is the codec's, not the schema's
            return
        decoded = decode(spec, data)
        assert isinstance(decoded, spec.model)

    decodes()


def test_the_generator_reaches_the_limits() -> None:
    """The generator is not too timid: it makes the longest allowed content and the edge identifiers."""
    schema = load_version(CREATED, 1)
    seen: set[str] = set()

    @settings(max_examples=300, deadline=None, database=None)
    @given(event=strategy(schema, schema))
    def collect(event: dict[str, Any]) -> None:
        payload = event["payload"]
        if len(payload["content"]) == 40_000:
            seen.add("longest content")
        if any(k not in schema["$defs"]["MessageCreatedPayload"]["properties"] for k in payload):
            seen.add("unknown payload field")
        if payload.get("mentions") == []:
            seen.add("no mentions")

    collect()
    assert seen == {"longest content", "unknown payload field", "no mentions"}


def test_every_published_version_reads_itself() -> None:
    for topic in TOPICS:
        for version in published_versions(topic):
            schema = load_version(topic, version)
            assert check_backward(schema, schema) == [], (topic, version)


def test_check_command_fails_naming_topic_field_and_rule(
    published: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import platform_events.schemas as schemas_module

    broken = _spec(ISSUES, _without(FactoryIssueEvent, "mode_log_id"))
    monkeypatch.setattr(schemas_module, "TOPICS", broken)
    monkeypatch.setattr(schemas_module, "schemas_dir", lambda: published)
    assert main(["check"]) == 1
    err = capsys.readouterr().err
    assert "event schema compatibility gate failed" in err
    assert "chatbot-issue-events: modeLogId: field-removed: field `modeLogId` was removed" in err
    assert main(["write"]) == 1
    assert "not backward compatible; nothing written" in capsys.readouterr().err
    assert published_versions(ISSUES, published) == [1]


def test_any_two_topics_are_incompatible_both_ways() -> None:
    """A smoke test over real pydantic output: the checker copes with every pair and finds real problems."""
    schemas = {topic: load_version(topic, 1) for topic in TOPICS}
    for old_topic, old in schemas.items():
        for new_topic, new in schemas.items():
            problems = check_backward(old, new)
            assert bool(problems) == (old_topic != new_topic), (old_topic, new_topic, problems)
            assert all(p.rule in RULES for p in problems)


def test_a_declared_context_field_must_accept_what_old_events_carried(published: Path) -> None:
    from platform_events import WideLogEvent

    class WithDuration(WideLogEvent):
        duration_ms: int | None = None

    [problem] = _gate(published, _spec("log-events", WithDuration))
    assert problem == (
        "log-events: duration_ms: type-changed: was any value, now only integer or null "
        "(old events may carry `duration_ms` as a free-form extra field) (against v1)"
    )


def test_widening_changes_are_compatible(published: Path) -> None:
    class Wider(FactoryIssueEvent):
        process_type: Literal["장애접수", "정기점검", "예방정비"] = Field(alias="processType")  # type: ignore[assignment]
        mode_log_id: str | None = Field(default=None, alias="modeLogId")  # type: ignore[assignment]
        description: Annotated[str, Field(max_length=20_000)] | None = None

    [problem] = _gate(published, _spec(ISSUES, Wider))
    assert "(backward compatible)" in problem
