"""Every successful answer is documented in the OpenAPI documents (the gateway's and each service's), and
the gateway documents a forwarded answer exactly as the owning service does.

A JSON answer needs a schema that names its fields (``{}`` or a bare ``object`` documents nothing); an
answer that is not JSON (Prometheus text, Server-Sent Events) needs its real content type and a description
of its format. No server is needed: the documents are built from the apps.

The gateway and the services answer with the same classes (``consumer_runtime.answers``); the comparison
holds each forwarding route to its owner's route: the same class (not a list of it, not a neighbour), the
same status code, description and content type.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from gateway.app import create_app
from gateway.config import GatewaySettings
from gateway_testlib import FORWARDED

DEFAULT_DESCRIPTION = "Successful Response"  # FastAPI's, when the route says nothing


def _apps() -> dict[str, FastAPI]:
    from issue_ingestor.app import create_app as ingestor_app
    from issue_ingestor.config import Settings as IngestorSettings
    from log_sink.app import create_app as log_sink_app
    from log_sink.config import Settings as LogSinkSettings
    from notifier.app import create_app as notifier_app
    from notifier.config import Settings as NotifierSettings
    from search_indexer.app import create_app as search_app
    from search_indexer.config import Settings as SearchSettings

    return {
        "gateway": create_app(GatewaySettings()),
        "issue-ingestor": ingestor_app(IngestorSettings()),
        "log-sink": log_sink_app(LogSinkSettings()),
        "search-indexer": search_app(SearchSettings()),
        "notifier": notifier_app(NotifierSettings()),
    }


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, Any]]:
    return {name: app.openapi() for name, app in _apps().items()}


def resolve(schema: Any, document: dict[str, Any]) -> Any:
    """``schema`` with every ``$ref`` into the document's components replaced by what it names."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            target = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
            return resolve({**target, **{k: v for k, v in schema.items() if k != "$ref"}}, document)
        return {k: resolve(v, document) for k, v in schema.items()}
    if isinstance(schema, list):
        return [resolve(v, document) for v in schema]
    return schema


def names_fields(schema: Any) -> bool:
    """The schema says what the answer holds: an object with properties, or an array of such."""
    if not isinstance(schema, dict):
        return False
    if schema.get("properties"):
        return True
    if schema.get("type") == "array":
        return names_fields(schema.get("items"))
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    return bool(alternatives) and all(names_fields(a) for a in alternatives)


def undocumented(document: dict[str, Any]) -> list[str]:
    """Every 2xx response of the document that does not say what it answers."""
    missing = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            for code, response in operation.get("responses", {}).items():
                if not code.startswith("2"):
                    continue
                where = f"{method.upper()} {path} {code}"
                content = response.get("content") or {}
                if not content:
                    missing.append(f"{where}: no content type")
                for media, body in content.items():
                    schema = resolve(body.get("schema"), document)
                    if media == "application/json":
                        if not names_fields(schema):
                            missing.append(f"{where}: JSON without a schema naming its fields: {schema}")
                    elif not schema or response.get("description") in (None, "", DEFAULT_DESCRIPTION):
                        missing.append(f"{where}: {media} without a schema and a description of its format")
    return missing


@pytest.mark.parametrize("app", ["gateway", "issue-ingestor", "log-sink", "search-indexer", "notifier"])
def test_every_successful_answer_is_documented(documents: dict[str, dict[str, Any]], app: str) -> None:
    missing = undocumented(documents[app])
    assert not missing, f"{app}: {len(missing)} undocumented answers:\n" + "\n".join(missing)


def test_the_check_finds_an_undocumented_answer() -> None:
    document = {
        "paths": {
            "/a": {"get": {"responses": {"200": {"content": {"application/json": {"schema": {}}}}}}},
            "/b": {"get": {"responses": {"200": {"description": DEFAULT_DESCRIPTION}}}},
            "/c": {"get": {"responses": {"200": {"content": {"text/plain": {}}}}}},
            "/d": {
                "get": {
                    "responses": {"200": {"content": {"application/json": {"schema": {"type": "object"}}}}}
                }
            },
            "/ok": {
                "get": {
                    "responses": {
                        "200": {
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/X"}}}
                        }
                    }
                }
            },
        },
        "components": {"schemas": {"X": {"type": "object", "properties": {"x": {"type": "string"}}}}},
    }
    assert [m.split(":")[0] for m in undocumented(document)] == [
        "GET /a 200",
        "GET /b 200",
        "GET /c 200",
        "GET /d 200",
    ]


def _untitled(schema: Any) -> Any:
    """Without the title FastAPI makes up from the route's name for an unnamed answer (``list[X]``)."""
    if isinstance(schema, dict) and str(schema.get("title", "")).startswith("Response "):
        return {k: v for k, v in schema.items() if k != "title"}
    return schema


def successes(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    """The 2xx responses of one operation, ``$ref`` resolved."""
    operation = document["paths"][path][method.lower()]
    return {
        code: {
            media: _untitled(resolve(body.get("schema"), document))
            for media, body in response["content"].items()
        }
        | {"description": response["description"]}
        for code, response in operation["responses"].items()
        if code.startswith("2")
    }


def test_forwarded_answers_are_documented_as_their_owner_documents_them(
    documents: dict[str, dict[str, Any]],
) -> None:
    from gateway.api.queries import ROUTES

    assert set(FORWARDED) == {(method, path) for method, path, _handler, _summary in ROUTES}
    differ = []
    for (method, path), (service, service_method, service_path) in FORWARDED.items():
        ours = successes(documents["gateway"], method, path)
        theirs = successes(documents[service], service_method, service_path)
        if ours != theirs:
            differ.append(f"{method} {path} ≠ {service} {service_method} {service_path}:\n{ours}\n{theirs}")
    assert not differ, "\n\n".join(differ)
