"""schemathesis over the gateway's OpenAPI document, against the gateway and the four real services:
no 5xx, and every response conforms to the documented status codes, content types and schemas.

Every operation is called with a valid token: the data plane with a user's API key (every data-plane
scope; generated user ids make the notification operations answer their documented 403), admin reads with
the admin token. Admin operations that change things (control, topic create, offset reset, produce, replay)
get the user's key, so they are exercised for their documented 403 and cannot stop services or create stray
topics. The SSE stream (endless) is covered by test_gateway_stack.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests
import schemathesis
from aiokafka import AIOKafkaProducer
from consumer_runtime.testing import wait_until
from gateway_testlib import AUTH, FORWARDED, USER_KEY, Stack, bearer
from hypothesis import HealthCheck, Phase, given, settings
from jsonschema import Draft202012Validator
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.integration

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SKIP = {("GET", "/api/v1/notifications/{user_id}/stream")}
EXAMPLES = 8


def _operations(schema: Any) -> list[Any]:
    out = []
    for result in schema.get_all_operations():
        operation = result.ok() if hasattr(result, "ok") else result
        if (operation.method.upper(), operation.path) not in SKIP:
            out.append(operation)
    return out


def _checker(operation: Any, base_url: str, session: requests.Session, headers: dict[str, str]) -> Any:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        case.validate_response(response, checks=CHECKS)

    return check


def _run(schema: Any, base_url: str) -> list[str]:
    failures: list[str] = []
    session = requests.Session()
    for operation in _operations(schema):
        needs = [s for req in operation.definition.raw.get("security", []) for s in req.get("bearer", [])]
        admin_read = needs == ["admin"] and operation.method.upper() == "GET"
        headers = AUTH if admin_read else bearer(USER_KEY)
        try:
            _checker(operation, base_url, session, headers)()
        except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failure
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    return failures


async def test_schemathesis_no_5xx_and_responses_conform(stack: Stack) -> None:
    raw = (await stack.client.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(raw)
    assert len(_operations(schema)) > 40
    failures = await asyncio.to_thread(_run, schema, stack.gateway.url)
    assert not failures, "\n\n".join(failures)


async def test_schemathesis_checks_bite(stack: Stack) -> None:
    """The same run over a schema that promises something the gateway does not send must fail."""
    raw = (await stack.client.get("/openapi.json")).json()
    liveness = raw["paths"]["/healthz"]["get"]
    liveness["responses"]["200"]["content"]["application/json"]["schema"] = {
        "type": "object",
        "required": ["promised_field"],
    }
    broken = {**raw, "paths": {"/healthz": {"get": liveness}}}
    failures = await asyncio.to_thread(_run, schemathesis.openapi.from_dict(broken), stack.gateway.url)
    assert len(failures) == 1
    assert "promised_field" in failures[0]


def _validator(document: dict[str, Any], method: str, path: str, status: int) -> Draft202012Validator:
    """A validator of the JSON answer ``status`` of an operation, as the document describes it."""
    response = document["paths"][path][method.lower()]["responses"][str(status)]
    schema = response["content"]["application/json"]["schema"]
    # the document's components at the root, so "#/components/schemas/…" resolves
    return Draft202012Validator({**schema, "components": document["components"]})


async def test_real_answers_conform_to_the_documented_schemas(stack: Stack, kafka_bootstrap: str) -> None:
    """One real answer of every forwarded operation (and the operations routes), with data behind it, checked
    against the gateway's OpenAPI document: schemathesis' random ids mostly reach 404s, these reach 2xx. As
    admin (acting for any user, every scope): the schemas are the subject here, the access decisions are
    test_gateway_access.py's."""
    client = stack.client
    document = (await client.get("/openapi.json")).json()
    tag = uuid.uuid4().hex[:8]
    issue_id, user, event_id = f"SCHEMA_{tag}", f"schema_user_{tag}", f"evt_schema_{tag}"
    sent = await client.post(
        "/api/v1/events/issues",
        json={
            "issue": issue_id,
            "processType": "장애접수",
            "modeType": "프레스",
            "modeLogId": f"{issue_id}_LOG",
            "description": "schema check",
            "isSolved": False,
            "timestamp": "2025-08-06T10:30:00",
        },
    )
    assert sent.status_code == 202, sent.text
    created = await client.post(
        "/messages",
        json={
            "channel_id": "ch_schema",
            "author_id": "user_001",
            "content": f"스키마 {tag}",
            "mentions": [user],
        },
    )
    assert created.status_code == 200, created.text
    message_id = created.json()["message_id"]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        event = {
            "event_id": event_id,
            "timestamp": "2026-11-23T10:00:00Z",
            "service": "schema",
            "status": 200,
        }
        await producer.send_and_wait(
            stack.names.topic("logs"), json.dumps(event).encode(), key=event_id.encode()
        )
    finally:
        await producer.stop()

    async def stored(path: str, ready: Callable[[Any], bool] = bool) -> bool:
        response = await client.get(path, headers=AUTH)
        return response.status_code == 200 and ready(response.json())

    await wait_until(lambda: stored(f"/api/v1/issues/{issue_id}"), timeout=30, what="issue stored")
    await wait_until(lambda: stored(f"/api/v1/logs/{event_id}"), timeout=30, what="log event stored")
    await wait_until(lambda: stored(f"/api/v1/messages/{message_id}"), timeout=30, what="message indexed")
    await wait_until(
        lambda: stored(f"/messages/search?q={tag}", lambda page: page["total"] >= 1),
        timeout=30,
        what="searchable",
    )
    await wait_until(
        lambda: stored(f"/api/v1/notifications/{user}", lambda page: page["total"] >= 1),
        timeout=30,
        what="notification stored",
    )
    notification_id = (await client.get(f"/api/v1/notifications/{user}", headers=AUTH)).json()["items"][0][
        "notification_id"
    ]

    calls: list[tuple[str, str, str, dict[str, Any]]] = [  # (method, documented path, real path, options)
        ("GET", "/healthz", "/healthz", {}),
        ("GET", "/readyz", "/readyz", {}),
        ("GET", "/health", "/health", {}),
        ("GET", "/api/kafka/status", "/api/kafka/status", {}),
        ("GET", "/api/kafka/issues", "/api/kafka/issues?limit=5", {}),
        ("GET", "/api/v1/issues", "/api/v1/issues?modeType=프레스&isSolved=false&limit=5", {}),
        ("GET", "/api/kafka/issues/{issue_id}", f"/api/kafka/issues/{issue_id}", {}),
        ("GET", "/api/v1/issues/{issue_id}", f"/api/v1/issues/{issue_id}", {}),
        ("GET", "/api/v1/issues/{issue_id}/sessions", f"/api/v1/issues/{issue_id}/sessions", {}),
        ("GET", "/messages/search", f"/messages/search?q={tag}", {}),
        ("GET", "/api/v1/search/messages", f"/api/v1/search/messages?q={tag}&sort=newest", {}),
        ("GET", "/api/v1/messages/{message_id}", f"/api/v1/messages/{message_id}", {}),
        ("GET", "/api/v1/logs", "/api/v1/logs?service=schema", {}),
        ("GET", "/api/v1/logs/{event_id}", f"/api/v1/logs/{event_id}", {}),
        ("GET", "/api/v1/notifications/{user_id}", f"/api/v1/notifications/{user}", {}),
        (
            "POST",
            "/api/v1/notifications/{user_id}/{notification_id}/read",
            f"/api/v1/notifications/{user}/{notification_id}/read",
            {},
        ),
        (
            "POST",
            "/api/v1/notifications/{user_id}/read",
            f"/api/v1/notifications/{user}/read",
            {"json": {"all": True}},
        ),
        (
            "PUT",
            "/api/v1/notifications/{user_id}/preferences",
            f"/api/v1/notifications/{user}/preferences",
            {"json": {"muted_channels": ["ch_muted"]}},
        ),
        (
            "GET",
            "/api/v1/notifications/{user_id}/preferences",
            f"/api/v1/notifications/{user}/preferences",
            {},
        ),
        ("GET", "/api/v1/search/rebuild", "/api/v1/search/rebuild", {}),
        ("POST", "/api/v1/search/rebuild", "/api/v1/search/rebuild", {"headers": AUTH}),
        ("DELETE", "/api/kafka/issues/{issue_id}", f"/api/kafka/issues/{issue_id}", {"headers": AUTH}),
    ]
    failures = []
    for method, documented, real, options in calls:
        response = await client.request(method, real, **{"headers": AUTH, **options})
        assert response.is_success, (method, real, response.status_code, response.text)
        errors = list(
            _validator(document, method, documented, response.status_code).iter_errors(response.json())
        )
        failures += [f"{method} {real}: {e.message} at {list(e.absolute_path)}" for e in errors]

    # the rebuild's last answer (every field set) too
    async def finished() -> Any:
        status = (await client.get("/api/v1/search/rebuild", headers=AUTH)).json()
        return status if status["state"] in ("done", "failed") else None

    done = await wait_until(finished, timeout=60, interval=0.3, what="rebuild finished")
    assert done["state"] == "done", done
    errors = list(_validator(document, "GET", "/api/v1/search/rebuild", 200).iter_errors(done))
    failures += [f"GET /api/v1/search/rebuild (done): {e.message}" for e in errors]
    # the same issue through its v1 twin: deleted through the seed path above, so a second one
    assert (await client.delete(f"/api/v1/issues/{issue_id}", headers=AUTH)).status_code == 404

    assert not failures, "\n".join(failures)
    checked = {(method, documented) for method, documented, _real, _options in calls}
    unchecked = set(FORWARDED) - checked - {("GET", "/api/v1/notifications/{user_id}/stream")}
    assert unchecked == {("DELETE", "/api/v1/issues/{issue_id}")}  # the same handler as the seed path's
