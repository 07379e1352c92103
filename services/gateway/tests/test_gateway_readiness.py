"""Readiness tells the cause fast: a service whose /readyz is slow because its datastore is down (its own
checks take 3 s to time out) is reported with that cause by the gateway's /readyz, which answers at once."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from consumer_runtime.testing import wait_until
from gateway.app import create_app
from gateway_testlib import Names, closed_port_url, gateway_settings

pytestmark = pytest.mark.integration

CAUSE = "ServerSelectionTimeoutError: localhost:27017 connection refused"


async def _slow_readyz(request: web.Request) -> web.Response:
    await asyncio.sleep(3.5)  # the service's own datastore check timing out (3 s) during an outage
    body = {"status": "not ready", "checks": {"datastore": CAUSE, "consumer": "ok"}}
    return web.json_response(body, status=503)


@pytest.fixture
async def slow_service() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/readyz", _slow_readyz)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    await runner.cleanup()


async def test_readyz_answers_at_once_with_the_cause_of_a_slow_services_outage(
    kafka_bootstrap: str, slow_service: str
) -> None:
    down = closed_port_url()
    settings = gateway_settings(
        kafka_bootstrap,
        Names(),
        kafka_auto_create_topics=False,
        log_sink_url=slow_service,  # slow because its datastore is down
        issue_ingestor_url=down,
        search_indexer_url=down,
        notifier_url=down,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30) as client:
            answers: list[tuple[float, dict[str, Any]]] = []

            async def cause_shown() -> bool:
                started = time.monotonic()
                response = await client.get("/readyz")
                answers.append((time.monotonic() - started, response.json()))
                assert response.status_code == 200, response.text  # Kafka decides; a service degrades
                return CAUSE in response.json()["checks"]["log-sink"]

            await wait_until(cause_shown, timeout=20, interval=0.3, what="the datastore's cause reported")
            slowest = max(took for took, _ in answers)
            assert slowest < 1.0, f"/readyz took {slowest:.1f} s"
            body = answers[-1][1]
            assert body["status"] == "degraded"
            assert "timed out" not in body["checks"]["log-sink"]
            assert body["checks"]["log-sink"].startswith("not ready: ")
            assert body["checks"]["kafka"] == "ok"
            assert "connect" in body["checks"]["notifier"]  # unreachable: named as such
            assert body["checked_s_ago"]["log-sink"] < 15
            seed = await client.get("/health")
            assert seed.json()["status"] == "degraded"
            metrics = (await client.get("/metrics")).text
            assert 'gateway_dependency_ready{dependency="log-sink"} 0.0' in metrics
            assert 'gateway_dependency_ready{dependency="kafka"} 1.0' in metrics
