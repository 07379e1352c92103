"""Stopping a consumer whose broker has gone away (a private broker of this test's own, stopped mid-run):
the stop completes instead of failing the service's shutdown."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest
from consumer_runtime import ConsumerRunner, State, ops_router
from consumer_runtime.testing import fast_settings, produce, wait_until
from consumer_runtime.topics import ensure_topics
from fastapi import FastAPI

sys.path.insert(0, str(Path(__file__).parent))
from test_consumer_integration import LOG_SPEC, RecordingSink, log_event

pytestmark = pytest.mark.integration


@pytest.mark.timeout(90)
async def test_stop_completes_when_the_broker_is_gone(tmp_path: Path) -> None:
    from devservers import start_private

    with start_private("kafka", data_dir=tmp_path / "broker") as broker:
        settings = fast_settings(broker.address, "gone-group")
        await ensure_topics(settings, ["gone", "gone.dlq"])
        sink = RecordingSink()
        runner = ConsumerRunner(name="gone", settings=settings, topics=[LOG_SPEC.renamed("gone")], sink=sink)
        await runner.start()
        try:
            await produce(broker.address, "gone", [log_event(i) for i in range(20)])
            await wait_until(lambda: len(sink.stored) == 20, timeout=30)
            app = FastAPI()
            app.include_router(ops_router(service="gone", runner=runner, checks={"datastore": sink.ping}))
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
                assert (await http.get("/readyz")).json()["status"] == "ready"
                broker.stop(timeout=5)
                await asyncio.sleep(2)  # the client's fetches are now failing and backing off
                # Only Kafka is down: the replica keeps serving reads (200), and says it is degraded.
                ready = await http.get("/readyz")
                assert ready.status_code == 200, ready.text
                assert ready.json()["status"] == "degraded"
                assert ready.json()["checks"]["datastore"] == "ok"
                assert ready.json()["checks"]["kafka"] != "ok"
                assert (await http.get("/healthz")).status_code == 200  # waiting for a broker is not wedged
        finally:
            await runner.close()  # must not raise (before the fix: CancelledError out of aiokafka's stop)
        assert runner.state == State.STOPPED
        assert runner._task is None
