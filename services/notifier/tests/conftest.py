"""Fixtures of the notifier's integration tests: a real app served by uvicorn on a free port, a MongoDB
database of this test session (dropped afterwards), SSE and event helpers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from consumer_runtime.testing import KafkaNames, delete_topics, fast_settings, produce, wait_until
from notifier.app import create_app
from notifier.config import Settings
from notifier.live import LiveHub, NotificationTail
from notifier.store import NotificationStore
from platform_events import MessageCreatedEvent, encode
from pymongo import AsyncMongoClient

#: the token the gateway sends; the service's state-changing endpoints need it (consumer_runtime.auth)
INTERNAL_TOKEN = "notifier-test-internal-token"


@pytest.fixture(scope="session")
async def notifier_db(mongo_url: str) -> AsyncIterator[str]:
    name = f"notifier_test_{uuid.uuid4().hex[:10]}"
    yield name
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        await client.drop_database(name)
    finally:
        await client.close()


@pytest.fixture
async def store(mongo_url: str, notifier_db: str) -> AsyncIterator[NotificationStore]:
    s = NotificationStore(mongo_url, notifier_db)
    await s.open()
    yield s
    await s.close()


def uid(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def message(
    mentions: list[str],
    *,
    author: str = "u_author",
    channel: str = "ch_dev",
    content: str = "프로젝트 배포 완료",
    event_id: str | None = None,
) -> MessageCreatedEvent:
    return MessageCreatedEvent.new(
        {
            "message_id": uid("msg"),
            "channel_id": channel,
            "author_id": author,
            "content": content,
            "mentions": mentions,
            "attachments": [],
        },
        event_id=event_id or uid("evt"),
    )


@dataclass
class Service:
    settings: Settings
    server: uvicorn.Server
    task: asyncio.Task[None]
    url: str
    http: httpx.AsyncClient
    app: Any

    @property
    def hub(self) -> LiveHub:
        hub: LiveHub = self.app.state.hub
        return hub

    @property
    def tail(self) -> NotificationTail:
        tail: NotificationTail = self.app.state.tail
        return tail

    async def send(self, *events: MessageCreatedEvent) -> None:
        await produce(
            self.settings.kafka_bootstrap_servers,
            self.settings.kafka_topic_messages_created,
            [encode(e) for e in events],
            keys=[e.channel_id.encode() for e in events],
        )

    async def notifications(self, user: str, **params: Any) -> dict[str, Any]:
        resp = await self.http.get(f"/notifications/{user}", params={"limit": 500, **params})
        resp.raise_for_status()
        body: dict[str, Any] = resp.json()
        return body

    async def wait_count(self, user: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        async def enough() -> list[dict[str, Any]] | None:
            items: list[dict[str, Any]] = (await self.notifications(user))["items"]
            return items if len(items) >= count else None

        found: list[dict[str, Any]] = await wait_until(
            enough, timeout=timeout, interval=0.1, what=f"{count} notifications of {user}"
        )
        return found

    async def wait_assigned(self, timeout: float = 30.0) -> None:
        async def assigned() -> bool:
            status = (await self.http.get("/consumer/status")).json()
            return bool(status["state"] == "running" and status["assignment"])

        await wait_until(assigned, timeout=timeout, interval=0.1, what="partitions assigned")

    async def wait_consumed(self, total: int, timeout: float = 30.0) -> None:
        """Until the consumer has stored+committed at least ``total`` records (decoded or dead-lettered)."""

        async def done() -> bool:
            status = (await self.http.get("/consumer/status")).json()
            counts = status["counts"]
            return bool(counts["stored"] + counts["dead_lettered"] >= total and status["buffered"] == 0)

        await wait_until(done, timeout=timeout, interval=0.1, what=f"{total} records consumed")


@dataclass
class SseClient:
    """Reads one SSE response in the background; ``events`` gets dicts with id, event, data, at."""

    task: asyncio.Task[None] | None = None
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    opened: asyncio.Event = field(default_factory=asyncio.Event)

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


async def open_stream(service: Service, user: str, last_event_id: str | None = None) -> SseClient:
    client = SseClient()
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    subscribed = service.hub.connections

    async def read() -> None:
        async with service.http.stream(
            "GET", f"/notifications/{user}/stream", headers=headers, timeout=None
        ) as resp:
            resp.raise_for_status()
            client.opened.set()
            current: dict[str, str] = {}
            async for line in resp.aiter_lines():
                if line == "":
                    if "data" in current:
                        await client.events.put(
                            {
                                "id": current.get("id"),
                                "event": current.get("event"),
                                "data": json.loads(current["data"]),
                                "at": time.time(),
                            }
                        )
                    current = {}
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                current[name] = value[1:] if value.startswith(" ") else value

    client.task = asyncio.create_task(read())
    await asyncio.wait_for(client.opened.wait(), 10)
    await wait_until(lambda: service.hub.connections > subscribed, timeout=10, what="stream subscribed")
    return client


@pytest.fixture
async def start_service(
    kafka_bootstrap: str, kafka_names: KafkaNames, mongo_url: str, notifier_db: str
) -> AsyncIterator[Callable[..., Awaitable[Service]]]:
    services: list[Service] = []
    sent_topic = f"{kafka_names.topic}-sent"

    async def start(**overrides: Any) -> Service:
        base = fast_settings(kafka_bootstrap, kafka_names.group).model_dump()
        values: dict[str, Any] = {
            **base,
            "mongo_url": mongo_url,
            "notifier_mongo_db": notifier_db,
            "kafka_topic_messages_created": kafka_names.topic,
            "kafka_topic_notifications_sent": sent_topic,
            "log_json": False,
            "stream_ping_s": 5.0,
            "internal_token": INTERNAL_TOKEN,
            **overrides,
        }
        settings = Settings(**values)
        app = create_app(settings)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_config=None, access_log=False, timeout_graceful_shutdown=5
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        await wait_until(lambda: server.started or task.done(), timeout=30, what="uvicorn started")
        if task.done():
            task.result()
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        # the client sends what the gateway sends: marking read, preferences and consumer control need it
        http = httpx.AsyncClient(
            base_url=url, timeout=10, headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"}
        )
        service = Service(settings, server, task, url, http, app)
        services.append(service)
        if settings.kafka_enabled and settings.live_tail_enabled:
            await service.tail.wait_ready()
        return service

    yield start
    for service in services:
        await service.http.aclose()
        service.server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(service.task, 30)
    extra = {s.settings.kafka_topic_messages_created for s in services} - {kafka_names.topic}
    await delete_topics(kafka_bootstrap, [sent_topic, *extra, *(f"{t}.dlq" for t in extra)])
