"""The constant-time token comparison and the internal-token guard of every service (pure logic, and the
guard on a small FastAPI app)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from consumer_runtime.auth import (
    InternalTokenGuard,
    internal_refusal,
    needs_internal_token,
    same_secret,
)
from consumer_runtime.service import HttpSettings
from fastapi import FastAPI
from pydantic import BaseModel, SecretStr


def test_same_secret_compares_utf8() -> None:
    assert same_secret("토큰", "토큰")
    assert not same_secret("토큰", "토큰2")


# ---------------------------------------------------------------------------------------- internal token
INTERNAL = "internal-s3cret"


@pytest.mark.parametrize(
    ("method", "path", "needed"),
    [
        ("GET", "/issues", False),
        ("HEAD", "/issues", False),
        ("get", "/consumer/status", False),
        ("POST", "/consumer/stop", True),
        ("DELETE", "/issues/x", True),
        ("PUT", "/preferences/u", True),
        ("PATCH", "/anything", True),
        ("OPTIONS", "/issues", True),
        ("GET", "/admin/rebuild", True),
        ("GET", "/admin", True),
        ("GET", "/administrators", False),
    ],
)
def test_what_needs_the_internal_token(method: str, path: str, needed: bool) -> None:
    assert needs_internal_token(method, path) is needed


@pytest.mark.parametrize("configured", [None, SecretStr("")])
def test_internal_endpoints_are_never_open(configured: SecretStr | None) -> None:
    for header in (None, "Bearer ", "Bearer anything"):
        status, message = internal_refusal(configured, header, service="svc") or (0, "")
        assert status == 403
        assert "INTERNAL_TOKEN is not configured on the svc" in message


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, 401),
        (f"Basic {INTERNAL}", 401),
        (INTERNAL, 401),
        ("Bearer ", 401),
        ("Bearer wrong", 401),
        (f"Bearer {INTERNAL}x", 401),
        (f"Bearer {INTERNAL[:-1]}", 401),
        (f"Bearer {INTERNAL}", None),
        (f"bearer {INTERNAL}", None),
        (f"BEARER {INTERNAL}", None),
    ],
)
def test_internal_token_must_match(header: str | None, expected: int | None) -> None:
    refusal = internal_refusal(SecretStr(INTERNAL), header, service="svc")
    assert (refusal[0] if refusal else None) == expected


class Body(BaseModel):
    value: int


def _guarded(token: str | None) -> FastAPI:
    app = FastAPI()

    @app.get("/read")
    async def read() -> dict[str, str]:
        return {"status": "read"}

    @app.post("/write")
    async def write(body: Body) -> dict[str, int]:
        return {"written": body.value}

    app.add_middleware(
        InternalTokenGuard, service="svc", token=SecretStr(token) if token is not None else None
    )
    return app


async def _request(app: FastAPI, method: str, path: str, **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        return await client.request(method, path, **kw)


async def test_guard_answers_before_routing_and_validation() -> None:
    app = _guarded(INTERNAL)
    for kw in (
        {"json": {"value": 1}},
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
    ):
        refused = await _request(app, "POST", "/write", **kw)
        assert refused.status_code == 401, refused.text  # not 422: nothing about the route is revealed
        assert refused.headers["www-authenticate"] == 'Bearer realm="svc"'
        assert "INTERNAL_TOKEN" in refused.json()["detail"]
    assert (await _request(app, "POST", "/no-such-route")).status_code == 401
    wrong = await _request(app, "POST", "/write", json={"value": 1}, headers={"Authorization": "Bearer no"})
    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "internal token is not valid"}


async def test_guard_admits_the_token_and_leaves_reads_open() -> None:
    app = _guarded(INTERNAL)
    auth = {"Authorization": f"Bearer {INTERNAL}"}
    assert (await _request(app, "POST", "/write", json={"value": 7}, headers=auth)).json() == {"written": 7}
    assert (await _request(app, "GET", "/read")).json() == {"status": "read"}
    assert (await _request(app, "GET", "/read", headers={"Authorization": "Bearer wrong"})).status_code == 200


async def test_guard_refuses_two_authorization_headers() -> None:
    app = _guarded(INTERNAL)
    headers = [("authorization", f"Bearer {INTERNAL}"), ("authorization", "Bearer other")]
    assert (await _request(app, "POST", "/write", json={"value": 1}, headers=headers)).status_code == 401


async def test_guard_without_a_configured_token_refuses_with_403() -> None:
    for token in (None, ""):
        app = _guarded(token)
        refused = await _request(
            app, "POST", "/write", json={"value": 1}, headers={"Authorization": "Bearer x"}
        )
        assert refused.status_code == 403
        assert "www-authenticate" not in refused.headers
        assert (await _request(app, "GET", "/read")).status_code == 200


def test_internal_token_is_a_secret_in_the_settings() -> None:
    settings = HttpSettings(internal_token=INTERNAL)
    assert INTERNAL not in repr(settings)
    assert settings.internal_token is not None
    assert settings.internal_token.get_secret_value() == INTERNAL
