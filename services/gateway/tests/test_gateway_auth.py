"""Admin endpoints are never open. The route list is enumerated, so a new route cannot be left unprotected
by accident: every route is either admin (bearer token) or on the explicit list of public ones."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from gateway.app import create_app
from gateway.auth import require_admin
from gateway_testlib import AUTH, Names, closed_port_url, gateway_settings, walk_routes

pytestmark = pytest.mark.integration

#: Routes that answer without the admin token: app-facing publish and queries, status reads, operations.
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("POST", "/messages"),
    ("GET", "/messages/search"),
    ("GET", "/api/kafka/status"),
    ("GET", "/api/kafka/issues"),
    ("GET", "/api/kafka/issues/{issue_id}"),
    ("POST", "/api/v1/messages"),
    ("PUT", "/api/v1/messages/{message_id}"),
    ("DELETE", "/api/v1/messages/{message_id}"),
    ("GET", "/api/v1/messages/{message_id}"),
    ("POST", "/api/v1/events/issues"),
    ("POST", "/api/v1/events/messages"),
    ("POST", "/api/v1/events/user-activity"),
    ("GET", "/api/v1/services"),
    ("GET", "/api/v1/services/{service}"),
    ("GET", "/api/v1/topics"),
    ("GET", "/api/v1/topics/{topic}"),
    ("GET", "/api/v1/consumer-groups"),
    ("GET", "/api/v1/consumer-groups/{group_id}"),
    ("GET", "/api/v1/consumer-groups/{group_id}/offsets"),
    ("GET", "/api/v1/dlq"),
    ("GET", "/api/v1/issues"),
    ("GET", "/api/v1/issues/{issue_id}"),
    ("GET", "/api/v1/issues/{issue_id}/sessions"),
    ("GET", "/api/v1/search/messages"),
    ("GET", "/api/v1/search/rebuild"),
    ("GET", "/api/v1/logs"),
    ("GET", "/api/v1/logs/{event_id}"),
    ("GET", "/api/v1/notifications/{user_id}"),
    ("POST", "/api/v1/notifications/{user_id}/read"),
    ("POST", "/api/v1/notifications/{user_id}/{notification_id}/read"),
    ("GET", "/api/v1/notifications/{user_id}/stream"),
    ("GET", "/api/v1/notifications/{user_id}/preferences"),
    ("PUT", "/api/v1/notifications/{user_id}/preferences"),
}

#: Values for path parameters when calling every admin route.
PATH_VALUES = {"service": "notifier", "action": "pause", "topic": "x", "group_id": "g", "issue_id": "i"}


def routes(app: FastAPI) -> list[tuple[str, str, APIRoute]]:
    out = []
    for path, route in walk_routes(list(app.routes)):
        for method in sorted(route.methods - {"HEAD"}):
            out.append((method, path, route))
    assert len(out) > 40, "route enumeration found too few routes"
    return out


def is_admin(route: APIRoute) -> bool:
    return any(dep.call is require_admin for dep in route.dependant.dependencies)


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), "x"), path)


def admin_routes(app: FastAPI) -> list[tuple[str, str]]:
    return [(m, p) for m, p, r in routes(app) if is_admin(r)]


def test_every_route_is_admin_or_explicitly_public() -> None:
    app = create_app(gateway_settings("127.0.0.1:1", Names()))
    found = {(m, p) for m, p, _ in routes(app)}
    admin = set(admin_routes(app))
    assert not (admin & PUBLIC), "a route is both admin and public"
    unclassified = found - admin - PUBLIC
    assert not unclassified, f"routes neither admin nor listed as public: {sorted(unclassified)}"
    assert not (PUBLIC - found), f"public list names routes that do not exist: {sorted(PUBLIC - found)}"
    # The admin list: consumer control, topic create, offset reset, DLQ replay, produce, deletes.
    for must in [
        ("POST", "/api/kafka/start"),
        ("POST", "/api/kafka/stop"),
        ("POST", "/api/kafka/restart"),
        ("POST", "/api/v1/services/{service}/{action}"),
        ("POST", "/api/v1/topics"),
        ("POST", "/api/v1/consumer-groups/{group_id}/offsets/reset"),
        ("POST", "/api/v1/dlq/{topic}/replay"),
        ("POST", "/api/v1/topics/{topic}/messages"),
        ("DELETE", "/api/kafka/issues/{issue_id}"),
        ("DELETE", "/api/v1/issues/{issue_id}"),
    ]:
        assert must in admin, must
    schema = app.openapi()
    for method, path in admin:
        operation = schema["paths"][path][method.lower()]
        security = operation.get("security", [])
        # every alternative needs the token: an API key never suffices for an admin operation
        assert security, (method, path)
        assert all("adminToken" in requirement for requirement in security), (method, path)


async def _call_all(app: FastAPI, headers: dict[str, str]) -> dict[tuple[str, str], httpx.Response]:
    out: dict[tuple[str, str], Any] = {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        for method, path in admin_routes(app):
            out[(method, path)] = await client.request(method, concrete(path), headers=headers, json={})
    return out


async def test_admin_routes_refuse_without_the_right_token(
    kafka_bootstrap: str, names: Names, kafka_cleanup: None
) -> None:
    down = closed_port_url()
    settings = gateway_settings(
        kafka_bootstrap,
        names,  # the session's names: the control topic this writes to is deleted at the end
        kafka_auto_create_topics=False,
        **{f"{s}_url": down for s in ("issue_ingestor", "log_sink", "search_indexer", "notifier")},
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
            for route, response in (await _call_all(app, headers)).items():
                assert response.status_code == 401, (route, headers, response.text)
                assert response.json()["error"] == "unauthorized"
                assert response.headers["www-authenticate"].startswith("Bearer")
        # with the right token the same calls get past authentication (whatever they answer next)
        for route, response in (await _call_all(app, AUTH)).items():
            assert response.status_code not in (401, 403), (route, response.text)
            assert response.status_code < 500 or response.json()["error"] == "upstream_unavailable", route


async def test_admin_routes_refuse_when_no_token_is_configured(kafka_bootstrap: str) -> None:
    app = create_app(
        gateway_settings(kafka_bootstrap, Names(), admin_token=None, kafka_auto_create_topics=False)
    )
    async with app.router.lifespan_context(app):
        for route, response in (await _call_all(app, AUTH)).items():
            assert response.status_code == 403, route
            assert response.json()["error"] == "admin_disabled"
            assert "ADMIN_TOKEN" in response.json()["message"]


async def test_optional_api_key_protects_app_endpoints(
    kafka_bootstrap: str, names: Names, kafka_cleanup: None
) -> None:
    app = create_app(
        gateway_settings(kafka_bootstrap, names, api_key="app-key", kafka_auto_create_topics=False)
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            body = {"channel_id": "c", "author_id": "a", "content": "x"}
            assert (await client.post("/messages", json=body)).status_code == 401
            assert (
                await client.post("/messages", json=body, headers={"X-API-Key": "nope"})
            ).status_code == 401
            assert (await client.get("/healthz")).status_code == 200  # operations stay open


async def test_cors_is_configurable() -> None:
    app = create_app(gateway_settings("127.0.0.1:1", Names(), cors_allow_origins="https://ops.example"))
    transport = httpx.ASGITransport(app=app)  # a preflight is answered by the middleware alone
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        ask = {"Access-Control-Request-Method": "GET"}
        pre = await client.options("/api/v1/topics", headers={"Origin": "https://ops.example", **ask})
        assert pre.headers["access-control-allow-origin"] == "https://ops.example"
        other = await client.options("/api/v1/topics", headers={"Origin": "https://evil.example", **ask})
        assert "access-control-allow-origin" not in other.headers
