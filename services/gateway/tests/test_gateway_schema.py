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
from typing import Any

import pytest
import requests
import schemathesis
from gateway_testlib import AUTH, USER_KEY, Stack, bearer
from hypothesis import HealthCheck, Phase, given, settings
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
