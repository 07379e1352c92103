"""The credentials besides JWTs: ADMIN_TOKEN, API keys from AUTH_API_KEYS_FILE (as a bearer token or in
X-API-Key), the deprecated shared API_KEY, the key-making command, and CORS in front of the decisions.
(Every route's decision: test_gateway_access; OIDC tokens: test_gateway_jwt.)"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway.app import create_app
from gateway.identity import DATA_PLANE_SCOPES, key_hash
from gateway_testlib import AUTH, Names, bearer, gateway_settings, write_api_keys

MESSAGE = {"channel_id": "c"}  # no author or content: 422 once past the decision


@contextlib.asynccontextmanager
async def client_of(**settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway in-process (lifespan running; Kafka off: nothing here reaches it)."""
    app = create_app(gateway_settings("127.0.0.1:1", Names(), kafka_enabled=False, **settings))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client,
    ):
        yield client


async def test_api_keys_from_the_file_as_bearer_or_x_api_key(tmp_path: Path) -> None:
    keys = write_api_keys(tmp_path / "keys.json", {"gwk_reader": ("svc-reader", ["messages:read"])})
    assert "gwk_reader" not in keys.read_text(), "the file holds hashes only"
    async with client_of(auth_api_keys_file=keys) as client:
        for headers in (bearer("gwk_reader"), {"X-API-Key": "gwk_reader"}):
            # past the decision of a messages:read route (the asyncapi doc needs no Kafka)
            assert (await client.get("/asyncapi.json", headers=headers)).status_code == 200
            assert (await client.post("/messages", json=MESSAGE, headers=headers)).status_code == 403
        assert (
            await client.post("/messages", json=MESSAGE, headers={"X-API-Key": "nope"})
        ).status_code == 401
        assert (await client.post("/messages", json=MESSAGE)).status_code == 401


async def test_the_deprecated_api_key_is_a_data_plane_identity() -> None:
    async with client_of(api_key="app-key") as client:
        assert (await client.post("/messages", json=MESSAGE)).status_code == 401
        assert (
            await client.post("/messages", json=MESSAGE, headers={"X-API-Key": "nope"})
        ).status_code == 401
        passed = await client.post("/messages", json=MESSAGE, headers={"X-API-Key": "app-key"})
        assert passed.status_code == 422, passed.text  # the body's turn: the key was accepted
        assert (await client.get("/api/v1/topics", headers={"X-API-Key": "app-key"})).status_code == 403
        assert (await client.get("/healthz")).status_code == 200  # operations stay open


async def test_admin_token_is_the_admin_identity_and_nothing_when_unset() -> None:
    async with client_of() as client:
        assert (await client.get("/asyncapi.json", headers=AUTH)).json().get("servers")
    async with client_of(admin_token=None) as client:
        assert (await client.get("/asyncapi.json", headers=AUTH)).status_code == 401
        assert (await client.post("/api/kafka/stop", headers=AUTH)).status_code == 401


def test_new_key_command_prints_a_key_and_its_entry(tmp_path: Path) -> None:
    made = subprocess.run(
        [sys.executable, "-m", "gateway.identity", "new-key", "--name", "ci", "--subject", "svc-ci",
         "--scopes", "issues:read issues:write"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    key = made.stdout.strip()
    entry = json.loads(made.stderr.strip().splitlines()[-1])
    assert entry == {"name": "ci", "subject": "svc-ci", "scopes": ["issues:read", "issues:write"],
                     "sha256": key_hash(key)}  # fmt: skip
    assert len(key) > 40
    refused = subprocess.run(
        [sys.executable, "-m", "gateway.identity", "new-key", "--name", "x", "--subject", "y",
         "--scopes", "root"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "root" in refused.stderr


@pytest.mark.parametrize("scopes", [sorted(DATA_PLANE_SCOPES)])
async def test_a_made_key_is_accepted(tmp_path: Path, scopes: list[str]) -> None:
    keys = write_api_keys(tmp_path / "k.json", {"gwk_made": ("user_001", scopes)})
    async with client_of(auth_api_keys_file=keys) as client:
        assert (await client.post("/messages", json=MESSAGE, headers=bearer("gwk_made"))).status_code == 422


async def test_cors_is_configurable_and_answers_before_the_decision() -> None:
    async with client_of(cors_allow_origins="https://ops.example") as client:
        ask = {"Access-Control-Request-Method": "GET"}
        pre = await client.options("/api/v1/topics", headers={"Origin": "https://ops.example", **ask})
        assert pre.headers["access-control-allow-origin"] == "https://ops.example"
        other = await client.options("/api/v1/topics", headers={"Origin": "https://evil.example", **ask})
        assert "access-control-allow-origin" not in other.headers
        # a refusal still carries CORS headers, so the browser app can read why
        refused = await client.get("/api/v1/topics", headers={"Origin": "https://ops.example"})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == "https://ops.example"
