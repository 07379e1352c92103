"""Start the platform's services as separate processes (like `make run`), for e2e and fault tests.

Everything a run touches carries the run id: topics (``e2e-<rid>.<topic>``), consumer groups, the control
topic, the MySQL database and user, the MongoDB databases and the Elasticsearch alias/indexes. Services listen
on free ports (never the `make run` defaults). Processes are started in their own session and signalled by
their PID (process group = the PID we started) only; ``Stack.close()`` stops them and drops the run's data.

Used by tests/e2e/test_e2e_*.py (fixtures in tests/e2e/conftest.py) and tests/faults/test_faults_*.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from consumer_runtime.testing import topic_env
from devservers import free_port

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"

#: service name → (python package, default consumer group)
SERVICES: dict[str, tuple[str, str | None]] = {
    "issue-ingestor": ("issue_ingestor", "chatbot-issue-consumer-group"),
    "log-sink": ("log_sink", "log-consumer-group"),
    "search-indexer": ("search_indexer", "search-indexer"),
    "notifier": ("notifier", "notification-service"),
    "gateway": ("gateway", None),
}
#: exit codes of a graceful stop: uvicorn re-raises SIGTERM after its clean shutdown (-15)
GRACEFUL = (0, -signal.SIGTERM)
SINKS = ("issue-ingestor", "log-sink", "search-indexer", "notifier")


# Variables of the developer's shell that must not leak into a test stack (they would point it elsewhere).
_ENV_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "VIRTUAL_ENV", "USER")


@dataclass(frozen=True)
class Names:
    """Every name one run uses; unique per run so runs never see each other's data."""

    rid: str

    @classmethod
    def fresh(cls, prefix: str = "e2e") -> Names:
        return cls(f"{prefix}{uuid.uuid4().hex[:8]}")

    def topic(self, default: str) -> str:
        return f"{self.rid}.{default}"

    def dlq(self, default: str) -> str:
        return f"{self.topic(default)}.dlq"

    @property
    def control_topic(self) -> str:
        return f"{self.rid}.platform.control"

    def group(self, service: str) -> str:
        base = SERVICES[service][1] or service
        return f"{base}-{self.rid}"

    @property
    def mysql_db(self) -> str:
        return f"{self.rid}_issues"

    @property
    def mysql_user(self) -> str:
        return self.rid[:32]

    @property
    def logs_db(self) -> str:
        return f"{self.rid}_logs"

    @property
    def notifier_db(self) -> str:
        return f"{self.rid}_ntf"

    @property
    def search_alias(self) -> str:
        return f"{self.rid}-messages"


@dataclass
class Endpoints:
    kafka: str
    mysql_port: int
    mongo_url: str
    elasticsearch_url: str
    mysql_host: str = HOST
    mysql_admin_user: str = "root"
    mysql_admin_password: str = ""


def shared_endpoints(names: Iterable[str] = ("kafka", "mysql", "mongo", "elasticsearch")) -> Endpoints:
    """The shared dev servers (started if missing, never stopped by us)."""
    from devservers import ensure

    wanted = list(names)
    ep = ensure(wanted)
    return Endpoints(
        kafka=ep.kafka_bootstrap if "kafka" in wanted else "",
        mysql_port=ep.mysql_port if "mysql" in wanted else 0,
        mongo_url=ep.mongo_url if "mongo" in wanted else "",
        elasticsearch_url=ep.elasticsearch_url if "elasticsearch" in wanted else "",
    )


# --------------------------------------------------------------------------------------------- processes
def proc_status_kb(pid: int, field: str) -> int | None:
    """A kB figure of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM`` ...) of one process; None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class Proc:
    """One service process we started (its own session: its PID is its process group)."""

    name: str
    port: int
    log_file: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def wait(self, timeout: float) -> int | None:
        if self.popen is None:
            return None
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def rss_kb(self, field: str = "VmRSS") -> int | None:
        """Resident memory of the service process (``VmRSS``; ``VmHWM``: its peak), None if it is gone."""
        if not self.alive() or self.pid is None:
            return None
        return proc_status_kb(self.pid, field)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class Stack:
    """Services of one run: ``start(...)`` them, ``url(name)``, ``kill``/``terminate``/``start`` again,
    ``close()``.

    One instance per service name by default; ``start(name, instance="2")`` runs another member of the same
    group on its own port (scaling tests).
    """

    def __init__(
        self,
        names: Names,
        endpoints: Endpoints,
        workdir: Path,
        *,
        env: Mapping[str, str] | None = None,
        service_env: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.names = names
        self.ep = endpoints
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.admin_token = secrets.token_urlsafe(18)
        # the gateway runs as deployed (GATEWAY_AUTH=required): an app's API key with the data-plane scopes
        self.app_key = f"gwk_e2e_{secrets.token_urlsafe(24)}"
        self.api_keys_file = self.workdir / "api-keys.json"
        digest = hashlib.sha256(self.app_key.encode()).hexdigest()
        entry = {"name": "e2e-app", "subject": "e2e-app", "sha256": digest,
                 "scopes": ["issues:read", "issues:write", "messages:read", "messages:write",
                            "notifications:self", "logs:read"]}  # fmt: skip
        self.api_keys_file.write_text(json.dumps({"keys": [entry]}))
        self.internal_token = secrets.token_urlsafe(18)  # gateway → services (consumer control, deletes ...)
        self.mysql_password = secrets.token_hex(12)
        self.extra_env = dict(env or {})
        self.service_env = {k: dict(v) for k, v in (service_env or {}).items()}
        self.procs: dict[str, Proc] = {}
        self._mysql_ready = False

    # ------------------------------------------------------------------ configuration
    def key(self, name: str, instance: str = "") -> str:
        return f"{name}#{instance}" if instance else name

    def port(self, name: str, instance: str = "") -> int:
        key = self.key(name, instance)
        if key not in self.procs:
            self.procs[key] = Proc(key, free_port(), self.workdir / f"{key.replace('#', '-')}.log")
        return self.procs[key].port

    def url(self, name: str, instance: str = "") -> str:
        return f"http://{HOST}:{self.port(name, instance)}"

    def env_for(self, name: str, instance: str = "") -> dict[str, str]:
        n = self.names
        env = {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "HTTP_HOST": HOST,
                "HTTP_PORT": str(self.port(name, instance)),
                "LOG_JSON": "true",
                "LOG_LEVEL": "INFO",
                "KAFKA_BOOTSTRAP_SERVERS": self.ep.kafka,
                "KAFKA_BROKER": self.ep.kafka,
                "KAFKA_ENABLE_IDEMPOTENCE": "false",  # Tansu has no idempotent producer
                "KAFKA_SESSION_TIMEOUT_MS": "6000",
                "KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
                "KAFKA_CONTROL_TOPIC": n.control_topic,
                "RETRY_BACKOFF_INITIAL_MS": "100",
                "RETRY_BACKOFF_MAX_MS": "2000",
                "MQ_BATCH_TIMEOUT_MS": "200",
                "SHUTDOWN_TIMEOUT_S": "20",
                "ADMIN_TOKEN": self.admin_token,
                "GATEWAY_AUTH": "required",
                "AUTH_API_KEYS_FILE": str(self.api_keys_file),
                "INTERNAL_TOKEN": self.internal_token,
                # datastores
                "DB_HOST": f"{self.ep.mysql_host}:{self.ep.mysql_port}",
                "DB_NAME": n.mysql_db,
                "DB_USERNAME": n.mysql_user,
                "DB_PASSWORD": self.mysql_password,
                "DB_POOL_SIZE": "4",
                "MONGO_URL": self.ep.mongo_url,
                "LOG_MONGO_DB": n.logs_db,
                "NOTIFIER_MONGO_DB": n.notifier_db,
                "ELASTICSEARCH_URL": self.ep.elasticsearch_url,
                "SEARCH_INDEX_ALIAS": n.search_alias,
                "SEARCH_INDEX_REPLICAS": "0",
                "SEARCH_INDEX_REFRESH_INTERVAL": "200ms",
                # gateway → services
                "ISSUE_INGESTOR_URL": self.url("issue-ingestor"),
                "LOG_SINK_URL": self.url("log-sink"),
                "SEARCH_INDEXER_URL": self.url("search-indexer"),
                "NOTIFIER_URL": self.url("notifier"),
            }
        )
        env.update(topic_env(n.topic))
        group = SERVICES[name][1]
        if group is not None:
            env["KAFKA_CONSUMER_GROUP"] = n.group(name)
        env.update(self.extra_env)
        env.update(self.service_env.get(name, {}))
        return env

    def set_env(self, name: str, **values: str) -> None:
        """Environment overrides for later (re)starts of ``name``."""
        self.service_env.setdefault(name, {}).update(values)

    # ------------------------------------------------------------------ lifecycle
    def ensure_mysql(self) -> None:
        if self._mysql_ready:
            return
        from devservers import ensure_mysql_database

        ensure_mysql_database(
            self.names.mysql_db,
            self.names.mysql_user,
            self.mysql_password,
            port=self.ep.mysql_port,
            admin_user=self.ep.mysql_admin_user,
            admin_password=self.ep.mysql_admin_password,
        )
        self._mysql_ready = True

    def spawn(self, name: str, instance: str = "") -> Proc:
        """Start the process (no wait). Its stdout/stderr are appended to a log file in the workdir."""
        if name == "issue-ingestor":
            self.ensure_mysql()
        self.port(name, instance)
        proc = self.procs[self.key(name, instance)]
        if proc.alive():
            return proc
        env = self.env_for(name, instance)
        with proc.log_file.open("ab") as log:
            log.write(f"\n# harness: start {time.strftime('%H:%M:%S')} port {proc.port}\n".encode())
            log.flush()
            proc.popen = subprocess.Popen(
                [sys.executable, "-m", SERVICES[name][0]],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc.starts += 1
        return proc

    def spawn_app(
        self, key: str, argv: Sequence[str], env: Mapping[str, str], *, like: str = "log-sink"
    ) -> Proc:
        """Start any other program (e.g. an app using the logging adapter) with ``like``'s environment plus
        ``env``, on its own free port (``HTTP_PORT``)."""
        self.port(key)
        proc = self.procs[key]
        full = {**self.env_for(like), "HTTP_PORT": str(proc.port), **env}
        with proc.log_file.open("ab") as log:
            proc.popen = subprocess.Popen(
                list(argv),
                cwd=REPO,
                env=full,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc.starts += 1
        return proc

    async def start(self, *names: str, instance: str = "", timeout: float = 60.0) -> None:
        """Start the services (concurrently) and wait until each one's /readyz answers 200."""
        for name in names:
            self.spawn(name, instance)
        await asyncio.gather(*(self.wait_ready(name, instance, timeout=timeout) for name in names))

    async def wait_ready(
        self, name: str, instance: str = "", *, timeout: float = 60.0, path: str = "/readyz"
    ) -> None:
        proc = self.procs[self.key(name, instance)]
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        async with httpx.AsyncClient(timeout=5.0) as client:
            while True:
                if not proc.alive():
                    raise AssertionError(
                        f"{proc.name} exited (rc={proc.popen.returncode if proc.popen else None}) before "
                        f"it was ready; log {proc.log_file}:\n{proc.log_tail()}"
                    )
                try:
                    r = await client.get(f"{proc.url}{path}")
                    if r.status_code == 200:
                        return
                    last = f"{r.status_code} {r.text[:300]}"
                except httpx.HTTPError as exc:
                    last = repr(exc)
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{proc.name} not ready after {timeout}s ({last}); log {proc.log_file}:\n"
                        f"{proc.log_tail()}"
                    )
                await asyncio.sleep(0.25)

    def kill(self, name: str, instance: str = "") -> None:
        """SIGKILL (a crash): nothing is flushed."""
        proc = self.procs[self.key(name, instance)]
        proc.signal(signal.SIGKILL)
        proc.wait(10)

    def terminate(self, name: str, instance: str = "", timeout: float = 40.0) -> int | None:
        """SIGTERM and wait for the graceful exit; SIGKILL if it does not come. Returns the exit code."""
        proc = self.procs[self.key(name, instance)]
        proc.signal(signal.SIGTERM)
        rc = proc.wait(timeout)
        if rc is None:
            proc.signal(signal.SIGKILL)
            proc.wait(10)
        return rc

    async def close(self, *, drop_data: bool = True) -> None:
        """Stop every process we started (SIGTERM, then SIGKILL), then drop the run's data."""
        procs = [p for p in self.procs.values() if p.alive()]
        for p in procs:
            p.signal(signal.SIGTERM)
        deadline = time.monotonic() + 25
        for p in procs:
            if p.wait(max(0.1, deadline - time.monotonic())) is None:
                p.signal(signal.SIGKILL)
                p.wait(10)
        if drop_data:
            await drop_run_data(self.names, self.ep)

    # ------------------------------------------------------------------ http helpers
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def app_headers(self) -> dict[str, str]:
        """An app's API key: the data-plane scopes (not admin; its own notifications only)."""
        return {"Authorization": f"Bearer {self.app_key}"}


# --------------------------------------------------------------------------------------------- clean-up
async def drop_run_data(names: Names, ep: Endpoints) -> None:
    """Best effort: topics and groups with the run id, MySQL db + user, MongoDB dbs, ES indexes."""
    rid = names.rid
    with contextlib.suppress(Exception):
        await delete_kafka_names(ep.kafka, rid)
    if ep.mysql_port:
        with contextlib.suppress(Exception):
            await drop_mysql(ep, names)
    if ep.mongo_url:
        with contextlib.suppress(Exception):
            from pymongo import AsyncMongoClient

            client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
                ep.mongo_url, serverSelectionTimeoutMS=3000
            )
            try:
                for db in (names.logs_db, names.notifier_db):
                    await client.drop_database(db)
            finally:
                await client.close()
    if ep.elasticsearch_url:
        with contextlib.suppress(Exception):
            await drop_indexes(ep.elasticsearch_url, names.search_alias)


async def delete_kafka_names(bootstrap: str, marker: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if marker in t]
        if topics:
            await admin.delete_topics(topics)
        # Consumer groups stay: aiokafka 0.14's admin client cannot delete them (no DeleteGroups call).
    finally:
        await admin.close()


async def drop_mysql(ep: Endpoints, names: Names) -> None:
    from devservers import drop_mysql_database_async

    await drop_mysql_database_async(
        names.mysql_db,
        names.mysql_user,
        port=ep.mysql_port,
        admin_user=ep.mysql_admin_user,
        admin_password=ep.mysql_admin_password,
    )


async def drop_indexes(es_url: str, alias: str) -> None:
    async with httpx.AsyncClient(base_url=es_url, timeout=10) as es:
        r = await es.get("/_cat/indices", params={"format": "json"})
        names = [row.get("index", "") for row in r.json()] if r.status_code == 200 else []
        for index in names:
            if index == alias or index.startswith(f"{alias}-"):
                await es.delete(f"/{index}")


# --------------------------------------------------------------------------------------------- kafka I/O
async def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    *,
    progress: Callable[[int], None] | None = None,
) -> dict[int, int]:
    """Send (key, value) records with acks=all; returns once every one is acknowledged, with the next offset
    of each partition written to (what a group that consumed them all has committed)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=10, max_batch_size=512 * 1024
    )
    await producer.start()
    ends: dict[int, int] = {}

    async def settle(pending: list[Any]) -> None:
        for meta in await asyncio.gather(*pending):
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
        pending.clear()

    try:
        pending: list[Any] = []
        for i, (key, value) in enumerate(records, 1):
            pending.append(await producer.send(topic, value=value, key=key))
            if len(pending) >= 2000:
                await settle(pending)
                if progress:
                    progress(i)
        await settle(pending)
    finally:
        await producer.stop()
    return ends


async def read_topic(bootstrap: str, topic: str, *, expect: int, timeout: float = 30.0) -> list[Any]:
    """Every record of a topic from the beginning (no group), waiting for at least ``expect``."""
    from consumer_runtime.testing import read_all

    return list(await read_all(bootstrap, topic, expect=expect, timeout=timeout))


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed next offset per partition of ``topic`` (partitions given explicitly: Tansu)."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
        tps = [TopicPartition(topic, p["partition"]) for p in described[0]["partitions"]]
        offsets = await admin.list_consumer_group_offsets(group, partitions=tps)
        return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
    finally:
        await admin.close()


# --------------------------------------------------------------------------------------------- polling
async def eventually(
    check: Callable[[], Awaitable[Any]],
    *,
    timeout: float,
    interval: float = 0.3,
    what: str,
) -> Any:
    """Poll ``check`` until it returns something truthy (exceptions count as "not yet")."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            result = await check()
            last = result
            if result:
                return result
        except (httpx.HTTPError, OSError, AssertionError, KeyError, ValueError) as exc:
            last = repr(exc)
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={_short(last)}")
        await asyncio.sleep(interval)


def _short(value: Any, limit: int = 600) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass
class Sampler:
    """Background sampler of a value (e.g. RSS) while a test runs."""

    fn: Callable[[], Any]
    interval: float = 0.25
    samples: list[tuple[float, Any]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic(), self.fn()))
            await asyncio.sleep(self.interval)

    def start(self) -> Sampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
