"""Protocol-level health checks: each one speaks the server's real protocol with the official client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import urllib.request
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from ._config import HOST

T = TypeVar("T")


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str  # version/cluster info when ok, the error otherwise


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # local servers: never via a proxy


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even if this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="devservers") as ex:
        return ex.submit(lambda: asyncio.run(factory())).result()


def _error(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# aiokafka logs every refused bootstrap at ERROR; drop the records of our own probes only, recognised by
# the thread that runs the probe (the probe's event loop has that thread to itself).
_probing_threads: set[int] = set()
_KAFKA_LOGGERS = ("aiokafka", "aiokafka.client", "aiokafka.conn", "aiokafka.admin", "aiokafka.admin.client")


class _ProbeFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread not in _probing_threads


_probe_filter = _ProbeFilter()
for _name in _KAFKA_LOGGERS:
    logging.getLogger(_name).addFilter(_probe_filter)


async def _kafka(port: int, limit: float) -> str:
    from aiokafka.admin import AIOKafkaAdminClient

    me = threading.get_ident()
    _probing_threads.add(me)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=f"{HOST}:{port}",
        client_id="devservers-health",
        request_timeout_ms=max(1000, int(limit * 1000)),
    )
    try:
        await asyncio.wait_for(admin.start(), limit)
        topics = await asyncio.wait_for(admin.list_topics(), limit)
        cluster = await asyncio.wait_for(admin.describe_cluster(), limit)
    finally:
        with contextlib.suppress(Exception):  # closing a half-started client may fail
            await asyncio.wait_for(admin.close(), limit)
        _probing_threads.discard(me)
    return f"cluster {cluster.get('cluster_id')}, {len(topics)} topics"


def check_kafka(port: int, timeout: float = 3.0) -> Health:
    try:
        return Health(True, run_sync(lambda: _kafka(port, timeout)))
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt | SystemExit):
            raise
        return Health(False, _error(e))


async def _mysql(port: int, user: str, password: str, limit: float) -> str:
    import asyncmy

    conn = await asyncio.wait_for(
        asyncmy.connect(host=HOST, port=port, user=user, password=password, connect_timeout=limit),
        limit,
    )
    try:
        async with conn.cursor() as cur:
            await asyncio.wait_for(cur.execute("SELECT 1, VERSION()"), limit)
            row = await cur.fetchone()
    finally:
        conn.close()
    if not row or row[0] != 1:
        raise RuntimeError(f"SELECT 1 returned {row!r}")
    return f"version {row[1]}"


def check_mysql(port: int, timeout: float = 3.0, user: str = "root", password: str = "") -> Health:
    try:
        return Health(True, run_sync(lambda: _mysql(port, user, password, timeout)))
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt | SystemExit):
            raise
        return Health(False, _error(e))


def check_mongo(port: int, timeout: float = 3.0) -> Health:
    import pymongo

    ms = max(200, int(timeout * 1000))
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        f"mongodb://{HOST}:{port}",
        directConnection=True,
        serverSelectionTimeoutMS=ms,
        connectTimeoutMS=ms,
        socketTimeoutMS=ms,
        appname="devservers-health",
    )
    try:
        reply = client.admin.command("ping")
        if reply.get("ok") != 1:
            return Health(False, f"ping answered {reply!r}")
        return Health(True, "ping ok")
    except Exception as e:
        return Health(False, _error(e))
    finally:
        client.close()


def check_elasticsearch(port: int, timeout: float = 3.0) -> Health:
    try:
        with _DIRECT.open(f"http://{HOST}:{port}/", timeout=timeout) as resp:
            body = json.loads(resp.read().decode())
        number = body["version"]["number"]
    except Exception as e:
        return Health(False, _error(e))
    return Health(True, f"version {number}")


def check_s3(port: int, timeout: float = 3.0) -> Health:
    """ListBuckets (GET /): moto answers it unsigned."""
    try:
        with _DIRECT.open(f"http://{HOST}:{port}/", timeout=timeout) as resp:
            body = resp.read().decode(errors="replace")
    except Exception as e:
        return Health(False, _error(e))
    if "ListAllMyBucketsResult" not in body:
        return Health(False, f"GET / is not an S3 ListBuckets answer: {body[:200]!r}")
    return Health(True, f"S3 (moto), {body.count('<Bucket>')} buckets")


def s3_create_bucket(port: int, bucket: str, timeout: float = 10.0) -> None:
    """CreateBucket (PUT /BUCKET) on the local S3 stand-in; idempotent (moto, like S3 in us-east-1,
    answers 200 for a bucket that already exists). moto needs no request signature."""
    req = urllib.request.Request(f"http://{HOST}:{port}/{bucket}", data=b"", method="PUT")
    with _DIRECT.open(req, timeout=timeout) as resp:
        resp.read()


def check(name: str, port: int, timeout: float = 3.0) -> Health:
    checks: dict[str, Callable[[int, float], Health]] = {
        "kafka": check_kafka,
        "mysql": check_mysql,
        "mongo": check_mongo,
        "elasticsearch": check_elasticsearch,
        "s3": check_s3,
    }
    return checks[name](port, timeout)
