"""The AsyncAPI document is generated from the registry, is self-consistent, its schemas accept the events
the codec writes (and refuse a bad one), and the committed docs/asyncapi.json matches the code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from platform_events import TOPICS, FactoryIssueEvent, MessageCreatedEvent, encode
from platform_events.asyncapi import asyncapi_document, key_path

COMMITTED = Path(__file__).resolve().parents[3] / "docs" / "asyncapi.json"
REGENERATE = "python -m platform_events.asyncapi > docs/asyncapi.json"


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _validator(doc: dict[str, Any], model: str) -> jsonschema.Draft202012Validator:
    root = {**doc, "$ref": f"#/components/schemas/{model}"}
    return jsonschema.Draft202012Validator(root)


def test_committed_document_matches_the_code() -> None:
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert committed == asyncapi_document(), f"docs/asyncapi.json is stale: run `{REGENERATE}`"


def test_every_reference_resolves() -> None:
    doc = asyncapi_document()
    refs = _refs(doc)
    assert len(refs) > 30
    for ref in refs:
        _resolve(doc, ref)


def test_every_topic_group_and_dlq_is_described() -> None:
    doc = asyncapi_document()
    assert doc["asyncapi"] == "3.0.0"
    by_address = {ch["address"]: ch for ch in doc["channels"].values()}
    for spec in TOPICS.values():
        channel = by_address[spec.name]
        assert channel["bindings"]["kafka"]["partitions"] == spec.partitions
        assert spec.model.__name__ in channel["messages"]
        assert spec.dlq_topic in by_address
        assert channel["x-consumer-groups"] == list(spec.consumer_groups)
    receives = [op for op in doc["operations"].values() if op["action"] == "receive"]
    groups = {(op["channel"]["$ref"], op["bindings"]["kafka"]["groupId"]["enum"][0]) for op in receives}
    expected = {
        (f"#/channels/{cid}", group)
        for cid, ch in doc["channels"].items()
        for group in ch.get("x-consumer-groups", [])
    }
    assert groups == expected
    assert ("#/channels/chatbot_issue_events", "chatbot-issue-consumer-group") in groups
    sends = {op["channel"]["$ref"] for op in doc["operations"].values() if op["action"] == "send"}
    assert len(sends) == len(TOPICS)


@pytest.mark.parametrize("topic", list(TOPICS))
def test_keys_name_a_field_of_the_event(topic: str) -> None:
    spec = TOPICS[topic]
    path = key_path(spec)
    assert path, f"{topic}: key function is not a plain field path"
    doc = asyncapi_document()
    schema = doc["components"]["schemas"][spec.model.__name__]
    channel = next(ch for ch in doc["channels"].values() if ch["address"] == spec.name)
    wire = channel["x-key"].split("`")[1]
    for part in wire.split("."):  # the documented JSON path exists in the schema
        if "$ref" in schema:
            schema = _resolve(doc, schema["$ref"])
        assert part in schema["properties"], (topic, wire)
        schema = schema["properties"][part]


def test_schemas_accept_encoded_events_and_refuse_bad_ones(
    issue_event: FactoryIssueEvent, created_event: MessageCreatedEvent
) -> None:
    doc = asyncapi_document()
    _validator(doc, "FactoryIssueEvent").validate(json.loads(encode(issue_event)))
    _validator(doc, "MessageCreatedEvent").validate(json.loads(encode(created_event)))
    bad = {**json.loads(encode(issue_event)), "processType": "없는유형"}
    with pytest.raises(jsonschema.ValidationError):
        _validator(doc, "FactoryIssueEvent").validate(bad)
    assert "issue" in doc["components"]["schemas"]["FactoryIssueEvent"]["required"]


def test_renamed_topics_are_documented_under_their_names() -> None:
    renamed = {
        k: (v.renamed("factory.issues") if k == "chatbot-issue-events" else v) for k, v in TOPICS.items()
    }
    doc = asyncapi_document(renamed, server="kafka:9092")
    addresses = {ch["address"] for ch in doc["channels"].values()}
    assert {"factory.issues", "factory.issues.dlq"} <= addresses
    assert "chatbot-issue-events" not in addresses
    assert doc["servers"]["local"]["host"] == "kafka:9092"
