"""Every route of the gateway has a decision in gateway.policy.POLICY, and each is enforced.

The routes are enumerated from the app itself (API routes, plain routes, mounts, and the console's own
routes), so a new route without a policy entry fails here. Each route is then called: without a token (401;
the console: its login), with a token lacking exactly the scope the route needs or for another user's
notifications (403), and with the right token (neither 401 nor 403). The services are down behind this
gateway, so the right token meets a 503 (or 404/422) — what matters is that it got past the decision.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from consumer_runtime.settings import ConfigError, load_settings
from fastapi import FastAPI
from gateway.app import create_app
from gateway.config import GatewaySettings
from gateway.identity import ADMIN, DATA_PLANE_SCOPES, SCOPES
from gateway.policy import CONSOLE, OPTIONAL, POLICY, PUBLIC, Need, Policy
from gateway_testlib import (
    ADMIN_TOKEN,
    AUTH,
    Names,
    bearer,
    closed_port_url,
    gateway_settings,
    walk_routes,
    write_api_keys,
)
from starlette.routing import Mount, Route

pytestmark = pytest.mark.integration

USER = "user_001"
OTHER_USER = "user_002"
#: the subject's key with every data-plane scope
USER_KEY = "gwk_test-user-all-data-plane-scopes"
#: for each scope, a key holding every other scope but admin (so a 403 is due to exactly that scope)
ALL_BUT = {scope: f"gwk_test-all-but-{scope.replace(':', '-')}" for scope in sorted(SCOPES)}
#: concrete values for path parameters
VALUES = {
    "user_id": USER,
    "service": "notifier",
    "action": "pause",
    "topic": "x",
    "group_id": "g",
    "issue_id": "i",
    "path": "x.css",
}


def keys_file(tmp: Path) -> Path:
    keys: dict[str, tuple[str, Any]] = {USER_KEY: (USER, DATA_PLANE_SCOPES)}
    keys.update({key: (USER, SCOPES - {scope, ADMIN}) for scope, key in ALL_BUT.items()})
    return write_api_keys(tmp / "api-keys.json", keys)


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path template) of every route the app serves, the console's included (HEAD as GET)."""
    found: set[tuple[str, str]] = set()

    def add(methods: set[str] | None, path: str) -> None:
        for method in methods or {"GET"}:
            if method != "HEAD":
                found.add((method, path))

    for path, route in walk_routes(list(app.routes)):
        add(route.methods, path)
    for item in app.routes:
        if isinstance(item, Route):
            add(item.methods, item.path)
        elif isinstance(item, Mount):
            inner = getattr(item.app, "routes", None)
            if inner is None:  # static files: everything below the mount
                add({"GET"}, f"{item.path}/{{path:path}}")
                continue
            for path, route in walk_routes(list(inner)):
                add(route.methods, item.path + path)
            for sub in inner:
                if isinstance(sub, Mount) and getattr(sub.app, "routes", None) is None:
                    add({"GET"}, f"{item.path}{sub.path}/{{path:path}}")
    assert len(found) > 70, "route enumeration found too few routes"
    return found


def concrete(path: str, **override: str) -> str:
    values = {**VALUES, **override}
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values.get(m.group(1), "x"), path)


def test_every_route_has_exactly_one_decision() -> None:
    app = create_app(gateway_settings("127.0.0.1:1", Names()))
    routes = app_routes(app)
    missing = routes - POLICY.keys()
    assert not missing, f"routes without a decision in gateway.policy.POLICY: {sorted(missing)}"
    stale = POLICY.keys() - routes
    assert not stale, f"POLICY entries of routes that do not exist: {sorted(stale)}"
    # the policy's own matching finds each route's entry for a concrete path (no entry shadows another)
    policy = Policy(POLICY)
    for method, path in routes:
        assert policy.decide(method, concrete(path))[0] is POLICY[(method, path)], (method, path)
    # what the issue names as admin
    for path in ("/api/v1/topics", "/api/v1/consumer-groups/{group_id}", "/api/v1/dlq", "/api/v1/services"):
        assert POLICY[("GET", path)] == Need(ADMIN), path


#: The only routes open without a token (probes, documents, the console's login and assets).
EXPECTED_PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/static/{path:path}"),
    ("GET", "/console/login"),
    ("POST", "/console/login"),
    ("GET", "/console/static/{path:path}"),
}


def expected(method: str, path: str) -> object:
    """The issue's scopes, as rules over the paths (a second statement of the policy, so loosening an
    entry fails here)."""
    if (method, path) in EXPECTED_PUBLIC:
        return PUBLIC
    if path == "/asyncapi.json":
        return OPTIONAL
    if path.startswith("/console/"):
        return CONSOLE
    if path.startswith("/api/v1/notifications/"):
        return Need("notifications:self", owner="user_id")
    if path.startswith("/api/v1/logs"):
        return Need("logs:read")
    if path.startswith(("/api/v1/topics", "/api/v1/consumer-groups", "/api/v1/dlq", "/api/v1/services")):
        return Need(ADMIN)
    if path in ("/api/kafka/start", "/api/kafka/stop", "/api/kafka/restart", "/api/v1/search/rebuild"):
        return Need(ADMIN)
    if "issues" in path or path == "/api/kafka/status":
        return Need("issues:read" if method == "GET" else "issues:write")
    if "messages" in path or path == "/api/v1/events/user-activity":
        return Need("messages:read" if method == "GET" else "messages:write")
    return None


def test_each_decision_is_the_one_the_issue_asks_for() -> None:
    wrong = {k: v for k, v in POLICY.items() if expected(*k) != v}
    assert not wrong, f"decisions other than the issue's: {wrong}"


def test_openapi_names_each_operations_scope_and_its_refusals() -> None:
    schema = create_app(gateway_settings("127.0.0.1:1", Names())).openapi()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            decision = POLICY[(method.upper(), path)]
            if isinstance(decision, Need):
                assert operation["security"] == [{"bearer": [decision.scope]}], (method, path)
                assert {"401", "403"} <= operation["responses"].keys(), (method, path)
            else:
                assert "security" not in operation, (method, path)
            if "requestBody" in operation:
                assert {"400", "413", "422"} <= operation["responses"].keys(), (method, path)


@contextlib.asynccontextmanager
async def running_gateway(
    bootstrap: str, names: Names, tmp: Path, **overrides: Any
) -> AsyncIterator[FastAPI]:
    """The gateway in-process (lifespan running) with the test keys, in front of services that are down."""
    down = closed_port_url()
    settings = gateway_settings(
        bootstrap,
        names,  # the session's names: a control command this writes is deleted with them
        kafka_auto_create_topics=False,
        auth_api_keys_file=keys_file(tmp),
        **{f"{s}_url": down for s in ("issue_ingestor", "log_sink", "search_indexer", "notifier")},
        **overrides,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def _order(item: tuple[tuple[str, str], Any]) -> tuple[bool, str, str]:
    (method, path), _ = item
    return (path == "/console/logout", path, method)  # the logout last: it ends the console session


async def test_every_route_refuses_and_admits_as_decided(
    kafka_bootstrap: str, names: Names, kafka_cleanup: None, tmp_path: Path
) -> None:
    failures: list[str] = []
    async with (
        running_gateway(kafka_bootstrap, names, tmp_path) as app,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw", timeout=30) as client,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw", timeout=30
        ) as console,
    ):
        await _check_every_route(failures, client, console)
    assert not failures, "\n".join(failures)


async def _check_every_route(
    failures: list[str], client: httpx.AsyncClient, console: httpx.AsyncClient
) -> None:
    login = await console.post(
        "/console/login",
        data={"token": ADMIN_TOKEN, "next": "/console/"},
        headers={"origin": "http://gw"},
    )
    assert login.status_code == 303, login.text
    assert console.cookies, "the console login set no cookie"

    async def call(
        method: str, path: str, headers: dict[str, str], via: httpx.AsyncClient = client
    ) -> httpx.Response:
        body = {"json": {}} if method in ("POST", "PUT") else {}
        return await via.request(method, path, headers={"origin": "http://gw", **headers}, **body)

    for (method, template), decision in sorted(POLICY.items(), key=_order):
        path = concrete(template)
        where = f"{method} {template}"
        anonymous = await call(method, path, {})
        if decision in (PUBLIC, OPTIONAL):
            if anonymous.status_code in (401, 403):
                failures.append(f"{where}: public, but {anonymous.status_code} without a token")
            continue
        if decision == CONSOLE:
            to_login = anonymous.status_code == 303 and "/console/login" in anonymous.headers["location"]
            if not (to_login or anonymous.status_code == 401):
                failures.append(f"{where}: console without a session answered {anonymous.status_code}")
            with_session = await call(method, path, {}, console)
            relogin = method == "GET" and "/console/login" in with_session.headers.get("location", "")
            if with_session.status_code in (401, 403) or relogin:
                failures.append(f"{where}: console with a session answered {with_session.status_code}")
            continue
        assert isinstance(decision, Need), where
        if anonymous.status_code != 401 or anonymous.json().get("error") != "unauthorized":
            failures.append(f"{where}: no token answered {anonymous.status_code}, not 401")
        for bad in ({"Authorization": "Bearer not-a-key"}, {"Authorization": "Basic abc"}):
            refused = await call(method, path, bad)
            if refused.status_code != 401:
                failures.append(f"{where}: {bad} answered {refused.status_code}, not 401")
        lacking = await call(method, path, bearer(ALL_BUT[decision.scope]))
        if lacking.status_code != 403 or lacking.json().get("error") != "forbidden":
            failures.append(f"{where}: a token without {decision.scope} answered {lacking.status_code}")
        right = await call(method, path, bearer(USER_KEY) if decision.scope != ADMIN else AUTH)
        past = right.status_code < 500 or right.json().get("error") == "upstream_unavailable"
        if right.status_code in (401, 403) or not past:
            failures.append(f"{where}: the right token answered {right.status_code}: {right.text[:200]}")
        if decision.owner is not None:
            other = concrete(template, **{decision.owner: OTHER_USER})
            foreign = await call(method, other, bearer(USER_KEY))
            if foreign.status_code != 403:
                failures.append(f"{where}: another user's answered {foreign.status_code}, not 403")
            as_admin = await call(method, other, AUTH)
            if as_admin.status_code in (401, 403):
                failures.append(f"{where}: admin for another user answered {as_admin.status_code}")


async def test_asyncapi_shows_broker_addresses_to_admins_only(
    kafka_bootstrap: str, names: Names, kafka_cleanup: None, tmp_path: Path
) -> None:
    async with (
        running_gateway(kafka_bootstrap, names, tmp_path) as app,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client,
    ):
        anonymous = await client.get("/asyncapi.json")
        user = await client.get("/asyncapi.json", headers=bearer(USER_KEY))
        admin = await client.get("/asyncapi.json", headers=AUTH)
        bad = await client.get("/asyncapi.json", headers=bearer("nope"))
    assert anonymous.status_code == user.status_code == admin.status_code == 200
    assert "servers" not in anonymous.json()
    assert "servers" not in user.json()
    bootstrap = kafka_bootstrap
    assert admin.json()["servers"]["local"]["host"] == bootstrap
    assert bootstrap not in anonymous.text
    assert bad.status_code == 401


async def test_open_mode_acts_as_an_anonymous_user_never_as_admin(
    kafka_bootstrap: str, names: Names, kafka_cleanup: None, tmp_path: Path
) -> None:
    async with running_gateway(kafka_bootstrap, names, tmp_path, gateway_auth="open") as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            health = await client.get("/health")
            assert health.json()["auth"] == "open"
            # the seed paths without a token: past the decision (the services are down: 503)
            for method, path in [
                ("GET", "/api/kafka/status"),
                ("GET", "/api/kafka/issues"),
                ("GET", "/messages/search"),
                ("GET", "/api/v1/logs"),
            ]:
                response = await client.request(method, path)
                assert response.status_code == 503, (path, response.text)
            posted = await client.post("/messages", json={"channel_id": "c", "author_id": "a", "content": ""})
            assert posted.status_code not in (401, 403)
            # never admin
            for path in ("/api/v1/topics", "/api/v1/services", "/api/v1/dlq"):
                assert (await client.get(path)).status_code == 403, path
            assert (await client.post("/api/kafka/stop")).status_code == 403
            # notifications: only the anonymous subject's own
            assert (await client.get(f"/api/v1/notifications/{USER}")).status_code == 403
            # a presented token is still verified, and then counts as itself
            assert (await client.get("/api/kafka/issues", headers=bearer("wrong"))).status_code == 401
            own = await client.get(f"/api/v1/notifications/{USER}", headers=bearer(USER_KEY))
            assert own.status_code == 503
            assert (await client.get("/api/v1/topics", headers=AUTH)).status_code == 200


async def test_required_mode_says_so_on_health(
    kafka_bootstrap: str, names: Names, kafka_cleanup: None, tmp_path: Path
) -> None:
    async with (
        running_gateway(kafka_bootstrap, names, tmp_path) as app,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client,
    ):
        assert (await client.get("/health")).json()["auth"] == "required"


def test_cloud_deployments_cannot_select_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_AUTH", "open")
    monkeypatch.setenv("DEPLOY_ENVIRONMENT", "cloud")
    with pytest.raises(ConfigError, match="GATEWAY_AUTH"):
        load_settings(GatewaySettings)
    monkeypatch.setenv("GATEWAY_AUTH", "required")
    assert load_settings(GatewaySettings).gateway_auth == "required"
    monkeypatch.setenv("GATEWAY_AUTH", "open")
    monkeypatch.setenv("DEPLOY_ENVIRONMENT", "local")
    assert load_settings(GatewaySettings).gateway_auth == "open"


def test_the_default_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_AUTH", raising=False)
    assert load_settings(GatewaySettings).gateway_auth == "required"


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("OIDC_ALGORITHMS", "RS256,none", "none"),
        ("OIDC_ALGORITHMS", "HS256", "HS256"),
        ("OIDC_JWKS_URL", "http://idp.example/keys", "https"),
    ],
)
def test_unsafe_oidc_settings_stop_the_start(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable) as refused:
        load_settings(GatewaySettings)
    assert says in str(refused.value)


def test_a_bad_api_keys_file_stops_the_start(tmp_path: Path) -> None:
    bad = tmp_path / "keys.json"
    bad.write_text(
        '{"keys": [{"name": "k", "subject": "s", "scopes": ["root"], "sha256": "' + "0" * 64 + '"}]}'
    )
    with pytest.raises(ConfigError, match="AUTH_API_KEYS_FILE"):
        create_app(gateway_settings("127.0.0.1:1", Names(), auth_api_keys_file=bad))
    with pytest.raises(ConfigError, match="AUTH_API_KEYS_FILE"):
        create_app(gateway_settings("127.0.0.1:1", Names(), auth_api_keys_file=tmp_path / "absent.json"))
