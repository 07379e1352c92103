"""Every service's ``/docs`` (built by ``build_service``) works without internet: Swagger UI's files come
from the service itself, like the gateway's, never from a CDN. No server is needed (no lifespan)."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI


def service_apps() -> dict[str, FastAPI]:
    from issue_ingestor.app import create_app as ingestor_app
    from issue_ingestor.config import Settings as IngestorSettings
    from log_sink.app import create_app as log_sink_app
    from log_sink.config import Settings as LogSinkSettings
    from notifier.app import create_app as notifier_app
    from notifier.config import Settings as NotifierSettings
    from search_indexer.app import create_app as search_app
    from search_indexer.config import Settings as SearchSettings

    return {
        "issue-ingestor": ingestor_app(IngestorSettings()),
        "log-sink": log_sink_app(LogSinkSettings()),
        "search-indexer": search_app(SearchSettings()),
        "notifier": notifier_app(NotifierSettings()),
    }


@pytest.mark.parametrize("name", ["issue-ingestor", "log-sink", "search-indexer", "notifier"])
async def test_docs_load_nothing_from_elsewhere(name: str) -> None:
    app = service_apps()[name]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        page = await client.get("/docs")
        assert page.status_code == 200
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text) + re.findall(r"url: '([^']+)'", page.text)
        assert assets, page.text
        elsewhere = [a for a in assets if a.startswith(("http://", "https://", "//"))]
        assert not elsewhere, f"{name} /docs loads {elsewhere}"
        for asset in assets:
            assert (await client.get(asset)).status_code == 200, asset
        assert (await client.get("/docs/static/LICENSE")).status_code == 200  # Swagger UI's licence
        assert (await client.get("/redoc")).status_code == 404  # ReDoc would load from a CDN
