"""AsyncAPI 3.0 document of the platform's events, generated from the topic registry (``TOPICS``).

Every topic becomes a channel (address, description, partitions, its ``.dlq`` dead-letter channel), every
event model a message (JSON Schema of the payload from pydantic, the Kafka key the registry derives), and
every consumer group a ``receive`` operation (Kafka binding ``groupId``). Producers get a ``send`` operation.
Each channel lists its published schema versions (``x-schema-versions``:
``libs/events/schemas/<topic>/vN.json``, and whether the current model still reads events written under it),
see :mod:`platform_events.schemas`.

Regenerate the committed copy with ``python -m platform_events.asyncapi > docs/asyncapi.json``
(a test compares the two). The gateway serves the document of its configured topic names at
``/asyncapi.json``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from platform_events.schemas import version_links
from platform_events.topics import DLQ_SUFFIX, TOPICS, TopicSpec

__all__ = ["ASYNCAPI_VERSION", "asyncapi_document", "key_path"]

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
SCHEMAS_REF = "#/components/schemas/{model}"

#: Headers the consumer runtime adds to a dead letter (documented, not enforced here).
DLQ_HEADERS_DOC = (
    "Dead letters keep the original key and value bytes; headers say where they came from and why they "
    "failed: dlq.original.topic/partition/offset/timestamp, dlq.error.class/message, dlq.stage, "
    "dlq.consumer.group, dlq.failed.at. The gateway replays them to the original topic "
    "(POST /api/v1/dlq/{topic}/replay)."
)


class _Path:
    """Records the attribute chain a key function reads (``event.payload.channel_id`` → that path)."""

    def __init__(self, parts: tuple[str, ...] = ()) -> None:
        self._parts = parts

    def __getattr__(self, name: str) -> _Path:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Path((*self._parts, name))


def key_path(spec: TopicSpec[Any]) -> str | None:
    """The field path the topic's key is taken from (Python attribute names), or None if not a plain path."""
    try:
        result = spec.key(_Path())
    except Exception:
        return None
    if not isinstance(result, _Path) or not result._parts:
        return None
    return ".".join(result._parts)


def _wire_path(model: type[BaseModel], path: str) -> str:
    """Attribute path → JSON field path (aliases, e.g. ``process_type`` → ``processType``)."""
    out: list[str] = []
    current: Any = model
    for part in path.split("."):
        fields = getattr(current, "model_fields", {})
        info = fields.get(part)
        if info is None:
            out.append(part)
            current = None
            continue
        out.append(info.serialization_alias or info.alias or part)
        annotation = info.annotation
        current = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return ".".join(out)


def _channel_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or "topic"


def _version() -> str:
    try:
        return metadata.version("platform-events")
    except metadata.PackageNotFoundError:  # pragma: no cover - source checkout without install
        return "0.0.0"


def asyncapi_document(
    topics: Mapping[str, TopicSpec[Any]] | None = None,
    *,
    version: str | None = None,
    server: str = "localhost:9092",
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``topics`` (default: the registry with its default names)."""
    registry = dict(TOPICS if topics is None else topics)
    models: list[type[BaseModel]] = []
    for spec in registry.values():
        if spec.model not in models:
            models.append(spec.model)
    schema_map, defs = models_json_schema(
        [(m, "validation") for m in models], ref_template=SCHEMAS_REF, title="Platform events"
    )
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))

    messages: dict[str, Any] = {}
    for model in models:
        ref = schema_map[(model, "validation")]
        name = model.__name__
        if "$ref" not in ref:  # a model without $defs entry: keep it inline under its own name
            schemas[name] = ref
        messages[name] = {
            "name": name,
            "title": name,
            "summary": (model.__doc__ or name).strip().splitlines()[0],
            "contentType": "application/json",
            "payload": {"$ref": SCHEMAS_REF.format(model=name)},
        }

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for default, spec in registry.items():
        cid = _channel_id(default)
        msg = spec.model.__name__
        path = key_path(spec)
        key_doc = (
            f"UTF-8 string: the event's `{_wire_path(spec.model, path)}`"
            if path
            else "UTF-8 string derived from the event"
        )
        kafka_message = {
            "key": {"type": "string", "description": key_doc},
            "bindingVersion": KAFKA_BINDING_VERSION,
        }
        message_ref = {"$ref": f"#/components/messages/{msg}"}
        channel_message = {**message_ref}
        channels[cid] = {
            "address": spec.name,
            "title": default,
            "description": spec.description,
            "messages": {msg: channel_message},
            "bindings": {
                "kafka": {
                    "topic": spec.name,
                    "partitions": spec.partitions,
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            },
            "x-key": key_doc,
            "x-dlq-channel": f"{cid}_dlq",
            **({"x-env-var": spec.env_var} if spec.env_var else {}),
            "x-consumer-groups": list(spec.consumer_groups),
            # the published JSON Schemas events on this topic were written under (libs/events/schemas)
            "x-schema-versions": version_links(default),
        }
        channels[f"{cid}_dlq"] = {
            "address": spec.name + DLQ_SUFFIX,
            "title": f"{default}{DLQ_SUFFIX}",
            "description": f"Dead letters of {spec.name}. {DLQ_HEADERS_DOC}",
            "messages": {msg: {**message_ref}},
            "bindings": {
                "kafka": {
                    "topic": spec.name + DLQ_SUFFIX,
                    "partitions": spec.partitions,
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            },
        }
        messages[msg].setdefault("bindings", {"kafka": kafka_message})
        channel_ref = {"$ref": f"#/channels/{cid}"}
        op_message = [{"$ref": f"#/channels/{cid}/messages/{msg}"}]
        operations[f"send_{cid}"] = {
            "action": "send",
            "channel": channel_ref,
            "title": f"Publish to {spec.name}",
            "summary": f"Producers send {msg} keyed by {key_doc.split(': ', 1)[-1]}",
            "messages": op_message,
        }
        for group in spec.consumer_groups:
            operations[f"receive_{cid}_{_channel_id(group)}"] = {
                "action": "receive",
                "channel": channel_ref,
                "title": f"{group} consumes {spec.name}",
                "summary": "At-least-once, idempotent writes, commit after the write; bad records → DLQ",
                "messages": op_message,
                "bindings": {
                    "kafka": {
                        "groupId": {"type": "string", "enum": [group]},
                        "bindingVersion": KAFKA_BINDING_VERSION,
                    }
                },
            }

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Platform events",
            "version": version or _version(),
            "description": "Every Kafka topic of the platform: its events (JSON), keys, consumer groups and "
            "dead-letter topics. Generated from libs/events (platform_events.TOPICS).",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": server,
                "protocol": "kafka",
                "description": "Local broker of `make run`; deployments set KAFKA_BOOTSTRAP_SERVERS",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def main() -> None:
    json.dump(asyncapi_document(), sys.stdout, ensure_ascii=False, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
