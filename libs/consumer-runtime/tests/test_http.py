"""The shared ops endpoints, served by a real FastAPI app over the real broker."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from consumer_runtime import ConsumerRunner, ops_router
from consumer_runtime.testing import KafkaNames, fast_settings, produce, wait_until
from fastapi import FastAPI
from platform_events import TOPICS

pytestmark = pytest.mark.integration


class NullSink:
    def __init__(self) -> None:
        self.healthy = True

    async def write(self, records: Any) -> list[Any]:
        return []

    async def ping(self) -> None:
        if not self.healthy:
            raise ConnectionError("datastore down")


async def _has(client: httpx.AsyncClient, text: str) -> bool:
    return text in (await client.get("/metrics")).text


async def test_ops_endpoints(kafka_bootstrap: str, kafka_names: KafkaNames) -> None:
    sink = NullSink()
    runner = ConsumerRunner(
        name="ops",
        settings=fast_settings(kafka_bootstrap, kafka_names.group),
        topics=[TOPICS["log-events"].renamed(kafka_names.topic)],
        sink=sink,
    )
    app = FastAPI()
    app.include_router(ops_router(service="test-svc", runner=runner, checks={"datastore": sink.ping}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        assert (await client.get("/healthz")).json()["status"] == "ok"
        await runner.start()
        await wait_until(lambda: runner.status().assignment, what="assignment")
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        sink.healthy = False
        not_ready = await client.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["checks"]["datastore"] == "datastore down"
        sink.healthy = True

        paused = await client.post("/consumer/pause")
        assert paused.json()["state"] == "paused"
        assert (await client.post("/consumer/resume")).json()["state"] == "running"
        assert (await client.post("/consumer/explode")).status_code == 422
        status = (await client.get("/consumer/status")).json()
        assert status["group"] == kafka_names.group
        assert {p["partition"] for p in status["assignment"]} == {0, 1, 2}

        metrics = (await client.get("/metrics")).text
        for name in (
            "platform_consumer_records_consumed_total",
            "platform_consumer_rebalances_total",
            "platform_consumer_lag",
            "platform_consumer_flush_seconds",
        ):
            assert name in metrics
        await produce(kafka_bootstrap, kafka_names.topic, [b"{}"], partition=0)
        series = f'platform_consumer_lag{{group="{kafka_names.group}"'
        await wait_until(lambda: _has(client, series), what="lag exported")
        stopped = await client.post("/consumer/stop")  # answers at once; the stop completes in the background
        assert (stopped.json()["action"], stopped.json()["leads_to"]) == ("stop", "stopped")
        assert stopped.json()["desired"] == "stopped"
        await wait_until(lambda: runner.state == "stopped", what="stopped")
        assert (await client.get("/consumer/status")).json()["state"] == "stopped"
        assert (await client.get("/readyz")).status_code == 200  # stopped by an operator is not "unready"
        # A stopped replica holds no partition: no stale lag figure is left behind (the group's lag, whatever
        # the consumers' state, is the gateway's platform_consumer_group_lag).
        assert series not in (await client.get("/metrics")).text
    await runner.close()
