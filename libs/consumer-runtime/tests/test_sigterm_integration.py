"""SIGTERM on a real service process: stop fetching, flush what is buffered, commit, leave the group."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


def _start_app(
    bootstrap: str, names: KafkaNames, out: Path, port: int, **env: str
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(APP), names.topic, str(out)],
        env={
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_CONSUMER_GROUP": names.group,
            "KAFKA_ENABLE_IDEMPOTENCE": "false",
            "KAFKA_CONTROL_ENABLED": "false",
            "KAFKA_SESSION_TIMEOUT_MS": "3000",
            "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
            "MQ_BATCH_SIZE": "5",
            "MQ_BATCH_TIMEOUT_MS": "50",
            "SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_S),
            "HTTP_PORT": str(port),
            **env,
        },
        stdout=open(f"{out}.log", "wb"),
        stderr=subprocess.STDOUT,
    )


SHUTDOWN_S = 4


@pytest.mark.parametrize("state", ["retrying-after-restart", "paused", "stopped", "reconnecting"])
async def test_sigterm_ends_the_process_in_every_state(
    state: str, kafka_bootstrap: str, kafka_names: KafkaNames, tmp_path: Path
) -> None:
    """In every state the loop yields to the event loop: SIGTERM ends the process within
    SHUTDOWN_TIMEOUT_S + 5 s. "retrying-after-restart": the datastore is down, an operator restarts the
    consumer (the pending batch is dropped with its backoff pause), and the datastore stays down."""
    out = tmp_path / "stored.jsonl"
    port = free_port()
    bootstrap = kafka_bootstrap
    if state == "reconnecting":
        bootstrap = f"127.0.0.1:{free_port()}"  # nothing listens there
    else:
        await ensure_topics(fast_settings(kafka_bootstrap), [kafka_names.topic, kafka_names.dlq])
    proc = _start_app(bootstrap, kafka_names, out, port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:

            async def status() -> dict[str, Any]:
                try:
                    body: dict[str, Any] = (await client.get("/consumer/status")).json()
                except httpx.HTTPError:
                    return {}
                return body

            async def in_state(*names: str) -> bool:
                return (await status()).get("state") in names

            if state == "reconnecting":
                await wait_until(lambda: in_state("starting", "reconnecting"), timeout=40, what=state)
                await asyncio.sleep(2)
            else:
                await wait_until(lambda: _assigned(status()), timeout=40, what="service assigned")
            if state == "retrying-after-restart":
                Path(f"{out}.down").write_bytes(b"")  # noqa: ASYNC240 - a marker file
                values = [
                    json.dumps(
                        {"event_id": f"r-{i}", "timestamp": "2026-11-23T00:00:00Z", "service": "x"}
                    ).encode()
                    for i in range(12)
                ]
                await produce(kafka_bootstrap, kafka_names.topic, values)
                await wait_until(lambda: in_state("retrying"), timeout=30, what="retrying")
                assert (await client.post("/consumer/restart")).json()["leads_to"] == "running"
                await wait_until(lambda: in_state("retrying"), timeout=40, what="retrying after the restart")
                assert (await client.get("/readyz")).status_code == 503
            elif state in ("paused", "stopped"):
                action = "pause" if state == "paused" else "stop"
                assert (await client.post(f"/consumer/{action}")).json()["leads_to"] == state
                await wait_until(lambda: in_state(state), timeout=30, what=state)
            assert (await client.get("/healthz")).status_code == 200  # the event loop answers
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=SHUTDOWN_S + 5)
        except subprocess.TimeoutExpired:
            pytest.fail(f"SIGTERM in state {state}: still running after {SHUTDOWN_S + 5}s")
        assert code in (0, -signal.SIGTERM), code
        assert time.monotonic() - started <= SHUTDOWN_S + 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
