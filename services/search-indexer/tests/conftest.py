"""Fixtures of the search-indexer tests: an alias of each test's own on the local Elasticsearch server."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import AsyncElasticsearch

sys.path.insert(0, str(Path(__file__).parent))

from search_indexer.config import Settings
from search_indexer.store import MessageStore
from search_indexer_testlib import drop_alias_indices, unique_alias


def es_settings(elasticsearch_url: str, alias: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_enabled": False,
        "elasticsearch_url": elasticsearch_url,
        "search_index_alias": alias,
        "search_index_replicas": 0,
        "search_write_retry_backoff_ms": 20,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
async def es(elasticsearch_url: str) -> AsyncIterator[AsyncElasticsearch]:
    client = AsyncElasticsearch(elasticsearch_url)
    yield client
    await client.close()


@pytest.fixture
async def alias(es: AsyncElasticsearch) -> AsyncIterator[str]:
    """A fresh alias name; every ``<alias>-*`` index is deleted after the test."""
    name = unique_alias()
    yield name
    await drop_alias_indices(es, name)


@pytest.fixture
async def store(elasticsearch_url: str, alias: str) -> AsyncIterator[MessageStore]:
    s = MessageStore.from_settings(es_settings(elasticsearch_url, alias))
    await s.ensure_alias()
    yield s
    await s.close()
