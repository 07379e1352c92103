"""SIGTERM on a real service process: stop fetching, flush what is buffered, commit, leave the group."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from consumer_runtime.testing import KafkaNames, fast_settings, produce, wait_until
from consumer_runtime.topics import ensure_topics
from devservers import free_port

pytestmark = pytest.mark.integration

APP = Path(__file__).with_name("sigterm_app.py")


async def test_sigterm_flushes_buffer_and_commits(
    kafka_bootstrap: str, kafka_names: KafkaNames, tmp_path: Path
) -> None:
    await ensure_topics(fast_settings(kafka_bootstrap), [kafka_names.topic, kafka_names.dlq])
    out = tmp_path / "stored.jsonl"
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_CONSUMER_GROUP": kafka_names.group,
        "KAFKA_ENABLE_IDEMPOTENCE": "false",
        "KAFKA_CONTROL_ENABLED": "false",
        "MQ_BATCH_SIZE": "10000",
        "MQ_BATCH_TIMEOUT_MS": "600000",  # never flushes by itself: only SIGTERM can store these
        "HTTP_PORT": str(port),
    }
    proc = subprocess.Popen(  # noqa: ASYNC220 - the process under test
        [sys.executable, str(APP), kafka_names.topic, str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def status() -> dict[str, object] | None:
                try:
                    body: dict[str, object] = (await client.get("/consumer/status")).json()
                    return body
                except httpx.HTTPError:
                    return None

            await wait_until(lambda: _assigned(status()), timeout=40, what="service assigned")
            values = [
                json.dumps(
                    {"event_id": f"s-{i}", "timestamp": "2026-11-23T00:00:00Z", "service": "x"}
                ).encode()
                for i in range(25)
            ]
            await produce(kafka_bootstrap, kafka_names.topic, values)

            async def buffered() -> bool:
                s = await status()
                return bool(s and s["buffered"] == 25)

            await wait_until(buffered, timeout=30, what="25 records buffered")
        assert not out.exists()
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal: the conventional exit status of SIGTERM
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stored = [json.loads(line)["event_id"] for line in out.read_text().splitlines()]
    assert sorted(stored) == sorted(f"s-{i}" for i in range(25))

    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=kafka_names.group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        committed = [await consumer.committed(TopicPartition(kafka_names.topic, p)) or 0 for p in range(3)]
    finally:
        await consumer.stop()
    assert sum(committed) == 25


async def _assigned(status_coro: object) -> bool:
    s = await status_coro  # type: ignore[misc]
    return bool(s and s.get("assignment"))
