"""Inside the cluster only the gateway changes a service's state: the four real services refuse a
state-changing call without the internal token (INTERNAL_TOKEN), the gateway's calls carry it, and a gateway
whose token differs from the services' answers 502 naming the misconfiguration - never passing the service's
401 on to a caller whose own credentials were fine."""

from __future__ import annotations

import uuid

import httpx
import pytest
from gateway.app import create_app
from gateway_testlib import AUTH, INTERNAL_TOKEN, Stack, gateway_settings, serve

pytestmark = pytest.mark.integration

INTERNAL = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}


async def test_services_refuse_state_changes_without_the_gateways_token(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for name, served in stack.services.items():
            for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": INTERNAL_TOKEN}):
                refused = await client.post(f"{served.url}/consumer/pause", headers=headers)
                assert refused.status_code == 401, (name, refused.text)
                assert refused.headers["www-authenticate"] == f'Bearer realm="{name}"'
            status = (await client.get(f"{served.url}/consumer/status")).json()  # reads stay open
            assert status["paused"] is False, name  # nothing was paused by the refused calls
        ingestor = stack.services["issue-ingestor"].url
        assert (await client.delete(f"{ingestor}/issues/{uuid.uuid4().hex}")).status_code == 401
        assert (
            await client.delete(f"{ingestor}/issues/{uuid.uuid4().hex}", headers=INTERNAL)
        ).status_code == 404
        assert (await client.get(f"{ingestor}/issues", params={"limit": 1})).status_code == 200
        indexer = stack.services["search-indexer"].url
        assert (await client.get(f"{indexer}/admin/rebuild")).status_code == 401  # /admin/* even for reads
        assert (await client.get(f"{indexer}/admin/rebuild", headers=INTERNAL)).status_code == 200


async def test_the_gateways_upstream_calls_carry_the_internal_token(stack: Stack) -> None:
    client, user = stack.client, f"u-{uuid.uuid4().hex[:8]}"
    # each reached the service's own handler: without the token each would be a 502 (refused upstream)
    missing = await client.delete(f"/api/kafka/issues/{uuid.uuid4().hex}", headers=AUTH)
    assert missing.status_code == 404, missing.text
    marked = await client.post(f"/api/v1/notifications/{user}/read", json={"all": True}, headers=AUTH)
    assert marked.status_code == 200, marked.text
    assert marked.json()["updated"] == 0
    put = await client.put(
        f"/api/v1/notifications/{user}/preferences", json={"muted_channels": ["ch_x"]}, headers=AUTH
    )
    assert put.status_code == 200, put.text
    assert (await client.get("/api/v1/search/rebuild", headers=AUTH)).status_code == 200


@pytest.mark.parametrize("token", ["not-the-services-token", None])
async def test_a_gateway_without_the_services_token_answers_502(
    stack: Stack, kafka_bootstrap: str, token: str | None
) -> None:
    urls = {f"{name.replace('-', '_')}_url": served.url for name, served in stack.services.items()}
    settings = gateway_settings(
        kafka_bootstrap, stack.names, internal_token=token, kafka_auto_create_topics=False, **urls
    )
    gateway = await serve(create_app(settings))
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            user = f"u-{uuid.uuid4().hex[:8]}"
            for method, path, body in (
                ("DELETE", f"/api/v1/issues/{uuid.uuid4().hex}", None),
                ("POST", f"/api/v1/notifications/{user}/read", {"all": True}),
                ("GET", "/api/v1/search/rebuild", None),
            ):
                answer = await client.request(method, path, json=body, headers=AUTH)
                assert answer.status_code == 502, (path, answer.text)
                error = answer.json()
                assert error["error"] == "upstream_refused"
                assert "INTERNAL_TOKEN" in error["message"]
            # plain reads need no internal token: the NetworkPolicies keep everyone but the gateway out
            assert (await client.get("/api/v1/issues", params={"limit": 1}, headers=AUTH)).status_code == 200
    finally:
        await gateway.stop()
