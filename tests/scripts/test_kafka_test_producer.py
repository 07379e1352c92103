"""The seed's producer script as documented: no flags against the local broker (which refuses idempotent
producers), a missing topic created with the platform's partition count, a failure that says what to do."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from consumer_runtime import KafkaSettings
from consumer_runtime.kafka_clients import start_admin
from consumer_runtime.testing import delete_topics
from consumer_runtime.topics import partition_counts

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kafka_test_producer.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_sends_to_the_local_broker_without_flags(kafka_bootstrap: str) -> None:
    topic = f"p22b-seed-{uuid.uuid4().hex[:8]}"
    try:
        done = await asyncio.to_thread(
            run, "--count", "3", "--seed", "1", "--topic", topic, "--bootstrap", kafka_bootstrap
        )
        assert done.returncode == 0, done.stderr
        assert f"to {topic} on {kafka_bootstrap}" in done.stdout
        assert "Traceback" not in done.stderr
        admin = await start_admin(KafkaSettings(kafka_bootstrap_servers=kafka_bootstrap))
        try:
            assert await partition_counts(admin, [topic]) == {topic: 3}  # the platform's, not auto-created
        finally:
            await admin.close()
    finally:
        await delete_topics(kafka_bootstrap, [topic])


def test_a_failure_says_what_to_do() -> None:
    done = run("--count", "1", "--topic", "p22b-nowhere", "--bootstrap", "127.0.0.1:1")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "could not send to p22b-nowhere on 127.0.0.1:1" in done.stderr
    assert "make infra-up" in done.stderr
