"""Fixtures of the gateway tests: the gateway and the four real services, each served by uvicorn on a free
port, over the local servers, with topic names, groups, databases and indexes of this session's own (all
deleted afterwards)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from consumer_runtime.testing import delete_topics, fast_settings, wait_until
from fastapi import FastAPI
from gateway.app import create_app
from gateway.config import GatewaySettings

sys.path.insert(0, str(Path(__file__).parent))

from gateway_testlib import (
    AUTH,
    INTERNAL_TOKEN,
    Names,
    Served,
    Stack,
    closed_port_url,
    gateway_settings,
    serve,
    write_test_keys,
)


@pytest.fixture(scope="session")
def names() -> Names:
    return Names()


@pytest.fixture(scope="session")
async def kafka_cleanup(kafka_bootstrap: str, names: Names) -> AsyncIterator[None]:
    """Deletes every topic of this session (platform topics, DLQs, control, test topics) at the end."""
    yield
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(names.prefix)]
    finally:
        await admin.close()
    await delete_topics(kafka_bootstrap, mine)


@pytest.fixture(scope="session")
async def gateway_app(kafka_bootstrap: str, names: Names, kafka_cleanup: None) -> AsyncIterator[FastAPI]:
    """The gateway in-process (lifespan running) with the default upstream URLs."""
    down = closed_port_url()
    urls = {f"{s}_url": down for s in ("issue_ingestor", "log_sink", "search_indexer", "notifier")}
    app = create_app(gateway_settings(kafka_bootstrap, names, **urls))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="session")
async def gw(gateway_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the in-process gateway (no services behind it), as an operator: these tests
    administer Kafka (every decision is test_gateway_access's)."""
    transport = httpx.ASGITransport(app=gateway_app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gateway", timeout=30, headers=AUTH
    ) as client:
        await wait_until(
            lambda: _topics_ready(client, names_of(gateway_app)), timeout=30, what="gateway topics created"
        )
        yield client


def names_of(app: FastAPI) -> list[str]:
    settings: GatewaySettings = app.state.settings
    return [spec.name for spec in settings.topics().values()] + [settings.kafka_control_topic]


async def _topics_ready(client: httpx.AsyncClient, wanted: list[str]) -> bool:
    response = await client.get("/api/v1/topics")
    have = {t["name"] for t in response.json()["topics"]} if response.status_code == 200 else set()
    return set(wanted) <= have


# ------------------------------------------------------------------------------------------ real services
def _service_kafka(bootstrap: str, names: Names, service: str) -> dict[str, Any]:
    return {
        **fast_settings(bootstrap, names.group(service)).model_dump(),
        **names.topics,  # every service reads its topics (and the control topic) under the run's names
        "log_json": False,
        "internal_token": INTERNAL_TOKEN,  # the gateway's: it sends it on every call
    }


@pytest.fixture(scope="session")
def ingestor_db(mysql_server: tuple[str, int], names: Names) -> Iterator[dict[str, Any]]:
    from devservers import drop_mysql_database, ensure_mysql_database

    host, port = mysql_server
    db = {"name": f"{names.db}_ii", "user": f"{names.db[-12:]}_ii", "password": "gw-test-pw"}
    ensure_mysql_database(db["name"], db["user"], db["password"], port=port)
    yield {
        "db_host": f"{host}:{port}",
        "db_name": db["name"],
        "db_username": db["user"],
        "db_password": db["password"],
    }
    drop_mysql_database(db["name"], db["user"], port=port)


@pytest.fixture(scope="session")
async def stack(
    kafka_bootstrap: str,
    mongo_url: str,
    elasticsearch_url: str,
    ingestor_db: dict[str, Any],
    names: Names,
    kafka_cleanup: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    """All four services (real apps, real datastores) and a gateway in front of them, each on its port.

    The gateway runs as ``make run`` runs it (GATEWAY_AUTH=open: the seed paths answer without a token;
    admin calls send AUTH) with the test API keys (gateway_testlib.USER_KEY, READER_KEY)."""
    from issue_ingestor.app import create_app as ingestor_app
    from issue_ingestor.config import Settings as IngestorSettings
    from log_sink.app import create_app as log_sink_app
    from log_sink.config import Settings as LogSinkSettings
    from notifier.app import create_app as notifier_app
    from notifier.config import Settings as NotifierSettings
    from search_indexer.app import create_app as search_app
    from search_indexer.config import Settings as SearchSettings

    alias = f"{names.prefix}-messages"
    apps = {
        "issue-ingestor": ingestor_app(
            IngestorSettings(
                **_service_kafka(kafka_bootstrap, names, "issue-ingestor"),
                **ingestor_db,
                db_pool_size=4,
            )
        ),
        "log-sink": log_sink_app(
            LogSinkSettings(
                **_service_kafka(kafka_bootstrap, names, "log-sink"),
                mongo_url=mongo_url,
                log_mongo_db=f"{names.db}_logs",
                log_retention_days=0,  # fixed event times in the tests must never expire
            )
        ),
        "search-indexer": search_app(
            SearchSettings(
                **_service_kafka(kafka_bootstrap, names, "search-indexer"),
                elasticsearch_url=elasticsearch_url,
                search_index_alias=alias,
                search_index_replicas=0,
                search_index_refresh_interval="1s",
            )
        ),
        "notifier": notifier_app(
            NotifierSettings(
                **_service_kafka(kafka_bootstrap, names, "notifier"),
                mongo_url=mongo_url,
                notifier_mongo_db=f"{names.db}_ntf",
                stream_ping_s=5.0,
            )
        ),
    }
    served: dict[str, Served] = {}
    try:
        for name, app in apps.items():
            served[name] = await serve(app)
        urls = {
            "issue_ingestor_url": served["issue-ingestor"].url,
            "log_sink_url": served["log-sink"].url,
            "search_indexer_url": served["search-indexer"].url,
            "notifier_url": served["notifier"].url,
        }
        keys = write_test_keys(tmp_path_factory.mktemp("gateway-keys") / "api-keys.json")
        settings = gateway_settings(
            kafka_bootstrap, names, gateway_auth="open", auth_api_keys_file=keys, **urls
        )
        gateway = await serve(create_app(settings))
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            stack = Stack(gateway, served, client, names)
            await wait_until(
                lambda: _all_assigned(client), timeout=60, interval=0.3, what="consumers assigned"
            )
            yield stack
        await gateway.stop()
    finally:
        for s in served.values():
            await s.stop()
        await _drop_datastores(mongo_url, elasticsearch_url, names, alias)


async def _all_assigned(client: httpx.AsyncClient) -> bool:
    response = await client.get("/api/v1/services", headers=AUTH)
    if response.status_code != 200:
        return False
    services = response.json()["services"]
    return all(s["reachable"] and s["status"]["assignment"] for s in services)


async def _drop_datastores(mongo_url: str, elasticsearch_url: str, names: Names, alias: str) -> None:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        for db in (f"{names.db}_logs", f"{names.db}_ntf"):
            await client.drop_database(db)
    finally:
        await client.close()
    async with httpx.AsyncClient(base_url=elasticsearch_url, timeout=30) as es:
        with contextlib.suppress(httpx.HTTPError):
            indices = (await es.get(f"/_cat/indices/{alias}*", params={"format": "json"})).json()
            for index in indices:
                await es.delete(f"/{index['index']}")
