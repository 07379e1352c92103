"""`make reset-data` (scripts/reset_data.py) empties what the project created and nothing else: run on
private names (never the shared servers' own data), next to look-alike data that must survive."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from consumer_runtime.settings import KafkaClientSettings
from consumer_runtime.testing import delete_topics
from consumer_runtime.topics import ensure_topics

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "reset_data.py"


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "DB_", "MONGO", "ELASTIC"))}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_reset_data_deletes_only_the_projects_data(
    kafka_bootstrap: str, mongo_url: str, elasticsearch_url: str, mysql_server: tuple[str, int]
) -> None:
    from devservers import drop_mysql_database, ensure_mysql_database
    from pymongo import AsyncMongoClient

    tag = uuid.uuid4().hex[:8]
    host, port = mysql_server
    topic_env = {name: f"p22b-{tag}-{i}" for i, name in enumerate(KafkaClientSettings().topic_env())}
    env = {
        **topic_env,
        "KAFKA_CONTROL_TOPIC": f"p22b-{tag}-control",
        "KAFKA_DLQ_REPLAY_TOPIC": f"p22b-{tag}-replays",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DB_HOST": f"{host}:{port}",
        "DB_NAME": f"p22b_{tag}",
        "DB_USERNAME": f"p22b_{tag}",
        "DB_PASSWORD": "reset-test",
        "MONGO_URL": mongo_url,
        "LOG_MONGO_DB": f"p22b_{tag}_logs",
        "NOTIFIER_MONGO_DB": f"p22b_{tag}_ntf",
        "ELASTICSEARCH_URL": elasticsearch_url,
        "SEARCH_INDEX_ALIAS": f"p22b-{tag}-messages",
    }
    alias = env["SEARCH_INDEX_ALIAS"]
    mine = [
        *topic_env.values(),
        *(f"{t}.dlq" for t in topic_env.values()),
        env["KAFKA_CONTROL_TOPIC"],
        env["KAFKA_DLQ_REPLAY_TOPIC"],
    ]
    other_topic, other_db, other_index = f"p22b-{tag}-other", f"p22b_{tag}_other", f"p22b-{tag}-other"
    # another alias's index that starts like ours (a test's `<alias>-deploy-…`): not ours to delete
    look_alike = f"{env['SEARCH_INDEX_ALIAS']}-deploy-{tag}-000001"
    settings = KafkaClientSettings(kafka_bootstrap_servers=kafka_bootstrap)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    es = httpx.AsyncClient(base_url=elasticsearch_url, timeout=30)
    try:
        await ensure_topics(settings, [*mine, other_topic], partitions=1)
        await asyncio.to_thread(
            ensure_mysql_database, env["DB_NAME"], env["DB_USERNAME"], "reset-test", port=port
        )
        for db in (env["LOG_MONGO_DB"], env["NOTIFIER_MONGO_DB"], other_db):
            await mongo[db]["c"].insert_one({"x": 1})
        for index in (f"{alias}-000001", f"{alias}-20261206041638-d108", other_index, look_alike):
            (await es.put(f"/{index}", json={"settings": {"number_of_replicas": 0}})).raise_for_status()
        (await es.put(f"/{alias}-000001/_alias/{alias}")).raise_for_status()

        shown = await asyncio.to_thread(run, env)  # without --yes: shows, deletes nothing
        assert shown.returncode == 1, shown.stderr
        assert env["LOG_MONGO_DB"] in shown.stdout
        assert (await es.head(f"/{alias}-000001")).status_code == 200

        done = await asyncio.to_thread(run, env, "--yes")
        assert done.returncode == 0, done.stderr
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            left = set(await admin.list_topics())
        finally:
            await admin.close()
        assert not set(mine) & left
        assert other_topic in left
        dbs = set(await mongo.list_database_names())
        assert env["LOG_MONGO_DB"] not in dbs
        assert env["NOTIFIER_MONGO_DB"] not in dbs
        assert other_db in dbs
        assert (await es.head(f"/{alias}-000001")).status_code == 404
        assert (await es.head(f"/{alias}-20261206041638-d108")).status_code == 404  # a rebuild's index
        assert (await es.head(f"/{other_index}")).status_code == 200
        assert (await es.head(f"/{look_alike}")).status_code == 200
        assert f"mysql database: {env['DB_NAME']}" in done.stdout
    finally:
        await delete_topics(kafka_bootstrap, [*mine, other_topic])
        await mongo.drop_database(other_db)
        for db in (env["LOG_MONGO_DB"], env["NOTIFIER_MONGO_DB"]):
            await mongo.drop_database(db)
        await mongo.close()
        for index in (f"{alias}-000001", f"{alias}-20261206041638-d108", other_index, look_alike):
            await es.delete(f"/{index}")
        await es.aclose()
        await asyncio.to_thread(drop_mysql_database, env["DB_NAME"], env["DB_USERNAME"], port=port)
