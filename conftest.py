"""Fixtures shared by every test in the repo: the local servers, started (or reused) on demand.

Each fixture asks ``devservers.ensure`` for only what it needs, so a unit test run starts nothing, and a
healthy server someone else started is reused and never stopped.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from consumer_runtime.testing import KafkaNames, delete_topics


@pytest.fixture(scope="session")
def endpoints_kafka() -> str:
    from devservers import ensure

    return ensure(["kafka"]).kafka_bootstrap


@pytest.fixture(scope="session")
def kafka_bootstrap(endpoints_kafka: str) -> str:
    return endpoints_kafka


@pytest.fixture(scope="session")
def mongo_url() -> str:
    from devservers import ensure

    return ensure(["mongo"]).mongo_url


@pytest.fixture(scope="session")
def elasticsearch_url() -> str:
    from devservers import ensure

    return ensure(["elasticsearch"]).elasticsearch_url


@pytest.fixture(scope="session")
def mysql_server() -> tuple[str, int]:
    from devservers import ensure

    ep = ensure(["mysql"])
    return ep.mysql_host, ep.mysql_port


@pytest.fixture
async def kafka_names(request: pytest.FixtureRequest, kafka_bootstrap: str) -> AsyncIterator[KafkaNames]:
    """A topic and consumer group no other test uses; the topics are deleted afterwards."""
    names = KafkaNames.fresh(request.node.name.split("[")[0][:20].replace("_", "-"))
    yield names
    await delete_topics(kafka_bootstrap, [names.topic, names.dlq])


def pytest_report_header() -> str:
    return f"CI={os.environ.get('CI', '')}"
