"""The search-indexer's own admin endpoint is never open: refused (403) without a configured ADMIN_TOKEN,
401 without the right bearer token. No broker or Elasticsearch needed: the refusal comes before the
rebuild manager is touched."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from search_indexer.api import _require_admin, router
from search_indexer.config import Settings

TOKEN = "unit-admin-token"


def _app(admin_token: str | None) -> FastAPI:
    app = FastAPI()
    app.state.settings = Settings(admin_token=admin_token)
    app.include_router(router)

    @app.get("/probe", dependencies=[Depends(_require_admin)])
    async def probe() -> dict[str, str]:  # the same dependency, on a route with no side effect
        return {"status": "admitted"}

    return app


async def _call(
    app: FastAPI, method: str, path: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://indexer") as client:
        return await client.request(method, path, headers=headers)


@pytest.mark.parametrize("unset", [None, ""])
async def test_rebuild_refused_when_no_admin_token_is_configured(unset: str | None) -> None:
    app = _app(unset)
    for headers in (None, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
        response = await _call(app, "POST", "/admin/rebuild", headers)
        assert response.status_code == 403, response.text
        assert "ADMIN_TOKEN is not configured" in response.json()["detail"]


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        (None, "send 'Authorization: Bearer <ADMIN_TOKEN>'"),
        ({"Authorization": f"Basic {TOKEN}"}, "send 'Authorization: Bearer <ADMIN_TOKEN>'"),
        ({"Authorization": TOKEN}, "send 'Authorization: Bearer <ADMIN_TOKEN>'"),
        ({"Authorization": "Bearer "}, "admin token is not valid"),
        ({"Authorization": "Bearer wrong-token"}, "admin token is not valid"),
        ({"Authorization": f"Bearer {TOKEN}x"}, "admin token is not valid"),
        ({"Authorization": f"Bearer {TOKEN[:-1]}"}, "admin token is not valid"),
    ],
)
async def test_rebuild_needs_the_configured_bearer_token(headers: dict[str, str] | None, detail: str) -> None:
    response = await _call(_app(TOKEN), "POST", "/admin/rebuild", headers)
    assert response.status_code == 401, response.text
    assert detail in response.json()["detail"]
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_the_right_token_is_admitted(scheme: str) -> None:
    response = await _call(_app(TOKEN), "GET", "/probe", {"Authorization": f"{scheme} {TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "admitted"}


def test_token_is_a_secret_in_the_settings() -> None:
    settings: Any = Settings(admin_token=TOKEN)
    assert TOKEN not in repr(settings)
    assert settings.admin_token.get_secret_value() == TOKEN
