"""Reset the local data of every store to empty: what the project created, and nothing else.

    .venv/bin/python scripts/reset_data.py          # show what would be deleted
    .venv/bin/python scripts/reset_data.py --yes    # delete it (`make reset-data`)

The names come from the same settings as `make run` (environment first, then .devdata/services.env, then
the services' defaults): the MySQL database DB_NAME (dropped and created again, empty, with its user), the
MongoDB databases LOG_MONGO_DB and NOTIFIER_MONGO_DB, the Elasticsearch indexes of SEARCH_INDEX_ALIAS
(the search-indexer's own names, ``<alias>-000001`` and a rebuild's ``<alias>-<UTC time>-<4 hex>``, and
whatever the alias points to; not another alias's ``<alias>-<more>-…``), the platform's Kafka topics,
their ``.dlq`` topics, the control topic and the gateway's DLQ replay markers (KAFKA_DLQ_REPLAY_TOPIC:
markers are keyed by DLQ partition and offset, so ones left behind would mark the new letters of an
emptied DLQ as replayed). Any other database, index or topic on the same servers is left alone, and only
servers on this machine (127.0.0.1 / localhost) are touched.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from consumer_runtime.kafka_clients import start_admin
from consumer_runtime.settings import KafkaClientSettings
from consumer_runtime.testing import delete_topics
from gateway.config import GatewaySettings

SERVICES_ENV = Path(__file__).resolve().parents[1] / ".devdata" / "services.env"
LOCAL = {"127.0.0.1", "localhost", "::1"}
DEFAULTS = {
    "DB_HOST": "127.0.0.1:3306",
    "DB_NAME": "platform",
    "DB_USERNAME": "platform",
    "DB_PASSWORD": "platform",
    "MONGO_URL": "mongodb://127.0.0.1:27017",
    "LOG_MONGO_DB": "logs",
    "NOTIFIER_MONGO_DB": "notifications",
    "ELASTICSEARCH_URL": "http://127.0.0.1:9200",
    "SEARCH_INDEX_ALIAS": "messages",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
}


def settings(path: Path = SERVICES_ENV) -> dict[str, str]:
    values = dict(DEFAULTS)
    if path.is_file():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip()
    values.update({k: v for k, v in os.environ.items() if k in DEFAULTS or k.startswith("KAFKA_")})
    return values


@dataclass
class Plan:
    env: dict[str, str]
    mysql: str = ""
    mongo: list[str] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)


def _host(address: str) -> str:
    return (urlsplit(address if "://" in address else f"//{address}").hostname or "").lower()


def remote_servers(env: dict[str, str]) -> list[str]:
    addresses = {
        "DB_HOST": env["DB_HOST"],
        "MONGO_URL": env["MONGO_URL"],
        "ELASTICSEARCH_URL": env["ELASTICSEARCH_URL"],
        **{
            f"KAFKA_BOOTSTRAP_SERVERS[{i}]": a
            for i, a in enumerate(env["KAFKA_BOOTSTRAP_SERVERS"].split(","))
        },
    }
    return [f"{k}={v}" for k, v in addresses.items() if _host(v) not in LOCAL]


async def plan(env: dict[str, str]) -> Plan:
    from pymongo import AsyncMongoClient

    p = Plan(env)
    import asyncmy

    host, _, port = env["DB_HOST"].rpartition(":")
    try:
        conn = await asyncmy.connect(host=host, port=int(port), user="root", password="")
    except Exception as exc:
        print(f"mysql: skipped ({exc!r})", file=sys.stderr)
    else:
        try:
            async with conn.cursor() as cur:
                await cur.execute(
                    "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (env["DB_NAME"],)
                )
                p.mysql = env["DB_NAME"] if await cur.fetchone() else ""
        finally:
            conn.close()
    mongo: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        env["MONGO_URL"], serverSelectionTimeoutMS=3000
    )
    try:
        have = set(await mongo.list_database_names())
        p.mongo = [d for d in (env["LOG_MONGO_DB"], env["NOTIFIER_MONGO_DB"]) if d in have]
    finally:
        await mongo.close()
    alias = env["SEARCH_INDEX_ALIAS"]
    own = re.compile(rf"{re.escape(alias)}-(\d{{6}}|\d{{14}}-[0-9a-f]{{4}})")  # store.new_index_name
    async with httpx.AsyncClient(base_url=env["ELASTICSEARCH_URL"], timeout=15) as es:
        named = await es.get(f"/_cat/indices/{alias}-*", params={"format": "json", "expand_wildcards": "all"})
        aliased = await es.get(f"/_alias/{alias}")
        p.indexes = sorted(
            {i["index"] for i in named.json() if own.fullmatch(i["index"])}
            | (set(aliased.json()) if aliased.status_code == 200 else set())
        )
    replays = (
        env.get("KAFKA_DLQ_REPLAY_TOPIC") or GatewaySettings.model_fields["kafka_dlq_replay_topic"].default
    )
    kafka = KafkaClientSettings(
        _env_file=None,
        **{k.lower(): v for k, v in env.items() if k.startswith("KAFKA_") and k != "KAFKA_DLQ_REPLAY_TOPIC"},
    )
    names = [spec.name for spec in kafka.topics().values()]
    wanted = {*names, *(f"{n}.dlq" for n in names), kafka.kafka_control_topic, replays}
    admin = await start_admin(kafka)
    try:
        p.topics = sorted(wanted & set(await admin.list_topics()))
    finally:
        await admin.close()
    return p


async def reset(p: Plan) -> None:
    from devservers import drop_mysql_database, ensure_mysql_database
    from pymongo import AsyncMongoClient

    env = p.env
    if p.mysql:
        port = int(env["DB_HOST"].rpartition(":")[2])
        await asyncio.to_thread(drop_mysql_database, p.mysql, env["DB_USERNAME"], port=port)
        await asyncio.to_thread(
            ensure_mysql_database, p.mysql, env["DB_USERNAME"], env["DB_PASSWORD"], port=port
        )
    mongo: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(env["MONGO_URL"])
    try:
        for db in p.mongo:
            await mongo.drop_database(db)
    finally:
        await mongo.close()
    async with httpx.AsyncClient(base_url=env["ELASTICSEARCH_URL"], timeout=30) as es:
        for index in p.indexes:
            (await es.delete(f"/{index}")).raise_for_status()
    if p.topics:
        await delete_topics(env["KAFKA_BOOTSTRAP_SERVERS"], p.topics)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--yes", action="store_true", help="delete (without it: only show what would go)")
    args = parser.parse_args(argv)
    env = settings()
    remote = remote_servers(env)
    if remote:
        print(
            f"refusing: not on this machine: {', '.join(remote)} (only local data is reset)", file=sys.stderr
        )
        return 2
    p = asyncio.run(plan(env))
    print(f"mysql database: {p.mysql or '-'} (dropped, then created again empty)")
    print(f"mongo databases: {', '.join(p.mongo) or '-'}")
    print(f"elasticsearch indexes: {', '.join(p.indexes) or '-'}")
    print(f"kafka topics: {', '.join(p.topics) or '-'}")
    if not args.yes:
        print("nothing deleted: run with --yes (make reset-data) to delete these")
        return 1
    asyncio.run(reset(p))
    print("reset: done (the services recreate topics, indexes and tables at their next start)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
