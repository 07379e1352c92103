"""Every route of every service has a decision, and each service keeps it.

The four services are built as their tests build them (real datastores, each app served by uvicorn on its
port; ``KAFKA_ENABLED=false`` so no handler reaches the broker) and every ``(method, path)`` they serve is
called:

- ``INTERNAL``: only the gateway may call it. No token, a wrong one, or one that is not a bearer token →
  401; ``INTERNAL_TOKEN`` unset on the service → 403; the right token → the route's own answer.
- ``OPEN``: a plain read, answered without a token (inside the cluster only the gateway can reach it:
  the NetworkPolicies, checked by deploy/validate.py).

A route a service adds, or one it drops, fails here until its decision is written into :data:`DECISIONS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from consumer_runtime.testing import http_routes, wait_until
from fastapi import FastAPI

pytestmark = pytest.mark.integration

INTERNAL, OPEN = "internal", "open"
TOKEN = "route-decisions-internal-token"

#: What every service serves whatever it is: its OpenAPI and docs page (consumer_runtime.docs: Swagger UI
#: from the package, its files under the /docs/static mount, no ReDoc) and the runtime's operational routes.
COMMON: dict[tuple[str, str], str] = {
    **{(m, p): OPEN for p in ("/openapi.json", "/docs") for m in ("GET", "HEAD")},
    ("GET", "/healthz"): OPEN,
    ("GET", "/readyz"): OPEN,
    ("GET", "/metrics"): OPEN,
    ("GET", "/consumer/status"): OPEN,
    ("POST", "/consumer/{action}"): INTERNAL,
}

DECISIONS: dict[str, dict[tuple[str, str], str]] = {
    "issue-ingestor": {
        **COMMON,
        ("GET", "/health"): OPEN,
        ("GET", "/issues"): OPEN,
        ("GET", "/issues/{issue_id}"): OPEN,
        ("GET", "/issues/{issue_id}/sessions"): OPEN,
        ("DELETE", "/issues/{issue_id}"): INTERNAL,
        ("GET", "/api/kafka/status"): OPEN,
        ("POST", "/api/kafka/{action}"): INTERNAL,
        ("GET", "/api/kafka/issues"): OPEN,
        ("GET", "/api/kafka/issues/{issue_id}"): OPEN,
        ("GET", "/api/kafka/issues/{issue_id}/sessions"): OPEN,
        ("DELETE", "/api/kafka/issues/{issue_id}"): INTERNAL,
    },
    "log-sink": {
        **COMMON,
        ("GET", "/logs"): OPEN,
        ("GET", "/logs/{event_id}"): OPEN,
    },
    "search-indexer": {
        **COMMON,
        ("GET", "/messages/search"): OPEN,
        ("GET", "/messages/{message_id}"): OPEN,
        ("POST", "/admin/rebuild"): INTERNAL,
        ("GET", "/admin/rebuild"): INTERNAL,  # /admin/* is the gateway's, reads included
        ("GET", "/admin/indices"): INTERNAL,
        ("DELETE", "/admin/indices/{name}"): INTERNAL,
    },
    "notifier": {
        **COMMON,
        ("GET", "/notifications/{user_id}"): OPEN,
        ("POST", "/notifications/{user_id}/read"): INTERNAL,
        ("POST", "/notifications/{user_id}/{notification_id}/read"): INTERNAL,
        ("GET", "/notifications/{user_id}/stream"): OPEN,
        ("GET", "/preferences/{user_id}"): OPEN,
        ("PUT", "/preferences/{user_id}"): INTERNAL,
        ("PUT", "/preferences/{user_id}/muted-channels/{channel_id}"): INTERNAL,
        ("DELETE", "/preferences/{user_id}/muted-channels/{channel_id}"): INTERNAL,
        ("GET", "/live/status"): OPEN,
    },
}

#: a value for every path parameter (a restart is refused with 409 while KAFKA_ENABLED=false: no effect)
PATH_VALUES = {
    "action": "restart",
    "issue_id": "ROUTE_DECISIONS_001",
    "event_id": "evt-route-decisions",
    "message_id": "msg-route-decisions",
    "name": "no-such-retired-index",
    "user_id": "user-route-decisions",
    "notification_id": "ntf-route-decisions",
    "channel_id": "ch-route-decisions",
}
#: the body a route with one needs, so that the right token reaches the route's own answer
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/notifications/{user_id}/read"): {"all": True},
    ("PUT", "/preferences/{user_id}"): {"muted_channels": []},
}
STREAMS = {("GET", "/notifications/{user_id}/stream")}


def concrete(path: str) -> str:
    for name, value in PATH_VALUES.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"no value for a parameter of {path}: add it to PATH_VALUES"
    return path


# ------------------------------------------------------------------------------------------ the services
@dataclass
class Datastores:
    mongo_url: str
    elasticsearch_url: str
    mysql: dict[str, Any]
    prefix: str


@pytest.fixture(scope="module")
async def datastores(
    mongo_url: str, elasticsearch_url: str, mysql_server: tuple[str, int]
) -> AsyncIterator[Datastores]:
    """A MySQL database, Mongo databases and an index alias of this module's own, dropped afterwards."""
    from devservers import drop_mysql_database, ensure_mysql_database

    host, port = mysql_server
    prefix = f"routes_{uuid.uuid4().hex[:8]}"
    user, password = f"{prefix[-12:]}_ii", "route-decisions-pw"
    ensure_mysql_database(prefix, user, password, port=port)
    mysql = {"db_host": f"{host}:{port}", "db_name": prefix, "db_username": user, "db_password": password}
    stores = Datastores(mongo_url, elasticsearch_url, mysql, prefix)
    try:
        yield stores
    finally:
        drop_mysql_database(prefix, user, port=port)
        await _drop(stores)


def build(service: str, stores: Datastores, token: str | None) -> FastAPI:
    """The service's app as ``python -m <service>`` builds it, consuming nothing."""
    common: dict[str, Any] = {"kafka_enabled": False, "log_json": False, "internal_token": token}
    if service == "issue-ingestor":
        from issue_ingestor.app import create_app as ingestor
        from issue_ingestor.config import Settings as IngestorSettings

        return ingestor(IngestorSettings(**common, **stores.mysql, db_pool_size=2))
    if service == "log-sink":
        from log_sink.app import create_app as log_sink
        from log_sink.config import Settings as LogSinkSettings

        return log_sink(
            LogSinkSettings(**common, mongo_url=stores.mongo_url, log_mongo_db=f"{stores.prefix}_logs")
        )
    if service == "search-indexer":
        from search_indexer.app import create_app as indexer
        from search_indexer.config import Settings as IndexerSettings

        return indexer(
            IndexerSettings(
                **common,
                elasticsearch_url=stores.elasticsearch_url,
                search_index_alias=stores.prefix.replace("_", "-"),
                search_index_replicas=0,
            )
        )
    from notifier.app import create_app as notifier
    from notifier.config import Settings as NotifierSettings

    return notifier(
        NotifierSettings(**common, mongo_url=stores.mongo_url, notifier_mongo_db=f"{stores.prefix}_ntf")
    )


@contextlib.asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """``app`` with its lifespan under uvicorn on a free port; yields its URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, access_log=False, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started or task.done(), timeout=60, what="uvicorn started")
        if task.done():
            task.result()
            raise RuntimeError("server exited at start-up")
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)


async def _drop(stores: Datastores) -> None:
    from pymongo import AsyncMongoClient

    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stores.mongo_url)
    try:
        for db in (f"{stores.prefix}_logs", f"{stores.prefix}_ntf"):
            await mongo.drop_database(db)
    finally:
        await mongo.close()
    alias = stores.prefix.replace("_", "-")
    async with httpx.AsyncClient(base_url=stores.elasticsearch_url, timeout=30) as es:
        with contextlib.suppress(httpx.HTTPError):
            for index in (await es.get(f"/_cat/indices/{alias}*", params={"format": "json"})).json():
                await es.delete(f"/{index['index']}")


# ------------------------------------------------------------------------------------------ the checks
async def call(client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    url, body = concrete(path), BODIES.get((method, path))
    if (method, path) in STREAMS:
        async with client.stream(method, url, headers=headers) as response:
            return response  # the status and headers: the stream is left open no longer than this
    return await client.request(method, url, headers=headers, json=body)


def answered_by_the_route(response: httpx.Response) -> bool:
    """The route itself answered (not the guard, and not a crash)."""
    return response.status_code not in (401, 403) and response.status_code < 500


@pytest.mark.parametrize("service", list(DECISIONS))
async def test_every_route_of_the_service_keeps_its_decision(service: str, datastores: Datastores) -> None:
    decisions = DECISIONS[service]
    app = build(service, datastores, TOKEN)
    served_routes = http_routes(app.routes)
    assert served_routes - decisions.keys() == set(), f"{service}: routes without a decision in DECISIONS"
    assert decisions.keys() - served_routes == set(), f"{service}: DECISIONS lists routes it no longer serves"
    problems: list[str] = []
    refused = {
        "no token": {},
        "a wrong token": {"Authorization": "Bearer not-the-internal-token"},
        "the token without 'Bearer'": {"Authorization": TOKEN},
    }
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        for method, path in sorted(decisions, key=lambda k: (k[1], k[0])):
            decision, where = decisions[(method, path)], f"{service} {method} {path}"
            for what, headers in refused.items():
                answer = await call(client, method, path, headers)
                if decision == INTERNAL and answer.status_code != 401:
                    problems.append(f"{where} with {what}: {answer.status_code}, expected 401")
                if decision == OPEN and not answered_by_the_route(answer):
                    problems.append(f"{where} with {what}: {answer.status_code}, expected the route's answer")
            admitted = await call(client, method, path, {"Authorization": f"Bearer {TOKEN}"})
            if not answered_by_the_route(admitted):
                problems.append(f"{where} with the token: {admitted.status_code} {admitted.text[:200]}")
    assert problems == []


@pytest.mark.parametrize("service", list(DECISIONS))
async def test_without_internal_token_every_internal_route_refuses_with_403(
    service: str, datastores: Datastores
) -> None:
    """Never open: refused before routing, so the app needs no datastore (its lifespan does not run)."""
    app = build(service, datastores, None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        for (method, path), decision in sorted(DECISIONS[service].items()):
            if decision != INTERNAL:
                continue
            for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": "Bearer "}):
                answer = await client.request(method, concrete(path), headers=headers)
                assert answer.status_code == 403, (service, method, path, answer.text)
                assert "INTERNAL_TOKEN is not configured" in answer.json()["detail"]
