"""Helpers of the gateway tests (unique basename: every test folder shares one import namespace)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from consumer_runtime.testing import wait_until
from fastapi import FastAPI
from fastapi.routing import APIRoute
from gateway.config import GatewaySettings
from gateway.identity import DATA_PLANE_SCOPES, key_hash

ADMIN_TOKEN = "gateway-test-admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
#: what the gateway sends to the services, and what they require on their state-changing endpoints
INTERNAL_TOKEN = "gateway-test-internal-token"


#: API keys of the test gateways (AUTH_API_KEYS_FILE written by ``write_test_keys``): a user with every
#: data-plane scope (a session-unique subject: its notifications are this run's only), a reader of issues.
USER = f"user_{uuid.uuid4().hex[:8]}"
USER_KEY = "gwk_test-user-key"
READER_KEY = "gwk_test-issues-reader-key"


def write_test_keys(path: Path) -> Path:
    return write_api_keys(
        path, {USER_KEY: (USER, DATA_PLANE_SCOPES), READER_KEY: ("reader", ["issues:read"])}
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def write_api_keys(path: Path, keys: dict[str, tuple[str, Iterable[str]]]) -> Path:
    """An AUTH_API_KEYS_FILE at ``path`` from {key: (subject, scopes)} (the file holds the hashes only)."""
    entries = [
        {"name": f"test-{i}", "subject": subject, "scopes": sorted(scopes), "sha256": key_hash(key)}
        for i, (key, (subject, scopes)) in enumerate(keys.items())
    ]
    path.write_text(json.dumps({"keys": entries}))
    return path


@dataclass
class Served:
    app: FastAPI
    server: uvicorn.Server
    task: asyncio.Task[None]
    url: str

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 40)


async def serve(app: FastAPI) -> Served:
    """Run ``app`` (with its lifespan) under uvicorn on a free port of 127.0.0.1, without uvicorn's own
    proxy-header handling (as ``python -m gateway`` runs: only ``TRUSTED_PROXIES`` decides)."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started or task.done(), timeout=60, what="uvicorn started")
    if task.done():
        task.result()
        raise RuntimeError("server exited at start-up")
    port = server.servers[0].sockets[0].getsockname()[1]
    return Served(app, server, task, f"http://127.0.0.1:{port}")


@dataclass
class Names:
    """Topic names, groups and datastore names of this test session."""

    prefix: str = field(default_factory=lambda: f"gwt-{uuid.uuid4().hex[:8]}")

    def topic(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    @property
    def topics(self) -> dict[str, str]:
        return {
            "kafka_topic_chatbot_issues": self.topic("issues"),
            "kafka_log_topic": self.topic("logs"),
            "kafka_topic_messages_created": self.topic("msg-created"),
            "kafka_topic_messages_updated": self.topic("msg-updated"),
            "kafka_topic_messages_deleted": self.topic("msg-deleted"),
            "kafka_topic_notifications_sent": self.topic("ntf-sent"),
            "kafka_topic_users_activity": self.topic("activity"),
            "kafka_control_topic": self.topic("control"),
        }

    def group(self, service: str) -> str:
        return f"{self.prefix}-{service}"

    @property
    def db(self) -> str:
        return self.prefix.replace("-", "_")


def gateway_settings(bootstrap: str, names: Names, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "kafka_enable_idempotence": False,
        "kafka_session_timeout_ms": 6000,
        "kafka_heartbeat_interval_ms": 1000,
        # 2x the session timeout: time enough for a stale member to expire; a live one holds on anyway
        "offset_reset_join_timeout_s": 12.0,
        "admin_token": ADMIN_TOKEN,
        "internal_token": INTERNAL_TOKEN,
        "log_json": False,
        "wide_logging_enabled": False,
        "upstream_timeout_s": 10.0,
        # the suites publish fast from one address; test_gateway_limits sets a small rate of its own
        "publish_rate_limit": "1000000/second",
        # the browser suite logs in once per test from 127.0.0.1; the login-rate test sets its own
        "console_login_rate_limit": "100000/minute",
        **names.topics,
        "kafka_dlq_replay_topic": names.topic("dlq-replays"),
        **overrides,
    }
    return GatewaySettings(**values)


def closed_port_url() -> str:
    """A URL where nothing listens (a port the OS just handed out and we released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@dataclass
class Stack:
    gateway: Served
    services: dict[str, Served]
    client: httpx.AsyncClient
    names: Names

    def service_app(self, name: str) -> FastAPI:
        return self.services[name].app


def walk_routes(items: list[Any], prefix: str = "") -> list[tuple[str, APIRoute]]:
    """Every APIRoute, also inside included routers (FastAPI ≥0.16x keeps them as lazy includes)."""
    out: list[tuple[str, APIRoute]] = []
    for item in items:
        if isinstance(item, APIRoute):
            out.append((prefix + item.path, item))
        elif hasattr(item, "original_router"):
            out += walk_routes(list(item.original_router.routes), prefix + item.include_context.prefix)
    return out


#: Every forwarded operation of the gateway → the owning service's operation whose answer it returns.
FORWARDED: dict[tuple[str, str], tuple[str, str, str]] = {
    ("GET", "/api/kafka/issues"): ("issue-ingestor", "GET", "/issues"),
    ("GET", "/api/kafka/issues/{issue_id}"): ("issue-ingestor", "GET", "/issues/{issue_id}"),
    ("DELETE", "/api/kafka/issues/{issue_id}"): ("issue-ingestor", "DELETE", "/issues/{issue_id}"),
    ("GET", "/api/v1/issues"): ("issue-ingestor", "GET", "/issues"),
    ("GET", "/api/v1/issues/{issue_id}"): ("issue-ingestor", "GET", "/issues/{issue_id}"),
    ("DELETE", "/api/v1/issues/{issue_id}"): ("issue-ingestor", "DELETE", "/issues/{issue_id}"),
    ("GET", "/api/v1/issues/{issue_id}/sessions"): ("issue-ingestor", "GET", "/issues/{issue_id}/sessions"),
    ("GET", "/messages/search"): ("search-indexer", "GET", "/messages/search"),
    ("GET", "/api/v1/search/messages"): ("search-indexer", "GET", "/messages/search"),
    ("GET", "/api/v1/messages/{message_id}"): ("search-indexer", "GET", "/messages/{message_id}"),
    ("POST", "/api/v1/search/rebuild"): ("search-indexer", "POST", "/admin/rebuild"),
    ("GET", "/api/v1/search/rebuild"): ("search-indexer", "GET", "/admin/rebuild"),
    ("GET", "/api/v1/logs"): ("log-sink", "GET", "/logs"),
    ("GET", "/api/v1/logs/{event_id}"): ("log-sink", "GET", "/logs/{event_id}"),
    ("GET", "/api/v1/notifications/{user_id}"): ("notifier", "GET", "/notifications/{user_id}"),
    ("POST", "/api/v1/notifications/{user_id}/read"): ("notifier", "POST", "/notifications/{user_id}/read"),
    ("POST", "/api/v1/notifications/{user_id}/{notification_id}/read"): (
        "notifier",
        "POST",
        "/notifications/{user_id}/{notification_id}/read",
    ),
    ("GET", "/api/v1/notifications/{user_id}/stream"): ("notifier", "GET", "/notifications/{user_id}/stream"),
    ("GET", "/api/v1/notifications/{user_id}/preferences"): ("notifier", "GET", "/preferences/{user_id}"),
    ("PUT", "/api/v1/notifications/{user_id}/preferences"): ("notifier", "PUT", "/preferences/{user_id}"),
}
