"""Fixtures of the log-sink tests: a MongoDB database of this session's own (dropped afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient, MongoClient


@pytest.fixture(scope="session")
def log_sink_db(mongo_url: str) -> Iterator[str]:
    name = f"log_sink_test_{uuid.uuid4().hex[:10]}"
    yield name
    with MongoClient(mongo_url) as client:
        client.drop_database(name)


@pytest.fixture
async def mongo(mongo_url: str) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    yield client
    await client.close()


@pytest.fixture
def fresh_db(mongo_url: str) -> Iterator[str]:
    """A database for one test only."""
    name = f"log_sink_t_{uuid.uuid4().hex[:10]}"
    yield name
    with MongoClient(mongo_url) as client:
        client.drop_database(name)
