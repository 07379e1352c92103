"""Contract: each service, started with exactly the environment its kind pod gets (ConfigMaps + Secrets of
the rendered overlay), answers its Deployment's probes with 200 — so manifests and code cannot drift apart.

Only values change, never keys (asserted): in-cluster host names are pointed at the local servers, the
pod's containerPorts (http, metrics) are mapped to free local ports (like a port-forward), the files of the
Secrets the pod mounts are written to a local folder the path variables then name, topic / group /
database / index names get a unique suffix so the shared local servers stay clean, and
KAFKA_ENABLE_IDEMPOTENCE is false
because the local Tansu broker has no idempotent producer (docs/local-servers.md).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from devservers import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("issue-ingestor", "log-sink", "search-indexer", "notifier", "gateway")
START_DEADLINE_S = 75.0
#: keys whose values name something on the shared servers: made unique per run (value + suffix)
TOPIC_KEY = re.compile(r"^KAFKA_(TOPIC_(?!PARTITIONS$|REPLICATION$).+|LOG_TOPIC|CONTROL_TOPIC)$")
MONGO_DB_KEYS = ("LOG_MONGO_DB", "NOTIFIER_MONGO_DB")


@dataclass
class Running:
    service: str
    env: dict[str, str]
    port: int
    probes: dict[str, str]
    grace_s: int
    metrics_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    problems: list[str] = field(default_factory=list)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log and self.log.exists() else ""


@dataclass
class Stack:
    running: dict[str, Running]
    suffix: str
    skipped: dict[str, str]


def _pod_contract(
    dv: ModuleType, objs: list[dict[str, Any]], service: str
) -> tuple[dict[str, str], int, dict[str, str], int]:
    deployment = dv.one(objs, "Deployment", service)
    container = dv.pod_spec(deployment)["containers"][0]
    probes: dict[str, str] = {}
    ports: set[int] = set()
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = container.get(kind, {}).get("httpGet")
        if get:
            probes[kind] = get["path"]
            ports.add(dv._port_of(container, get["port"]))
    assert len(ports) == 1, f"{service}: probes on several ports {ports}"
    grace = dv.pod_spec(deployment).get("terminationGracePeriodSeconds", 30)
    return dv.container_env(objs, deployment), ports.pop(), probes, grace


def _mounted_files(
    dv: ModuleType, objs: list[dict[str, Any]], service: str, env: dict[str, str], folder: Path
) -> dict[str, str]:
    """The Secret volumes the pod mounts, written under ``folder`` (as the kubelet projects them); returns the
    overrides of the variables whose value is a path inside such a mount."""
    spec = dv.pod_spec(dv.one(objs, "Deployment", service))
    secrets = {v["name"]: v["secret"] for v in spec.get("volumes", []) if "secret" in v}
    overrides: dict[str, str] = {}
    for mount in spec["containers"][0].get("volumeMounts", []):
        secret = secrets.get(mount["name"])
        found = dv.find(objs, "Secret", secret["secretName"]) if secret else []
        if not found:
            continue
        local = folder / service / mount["name"]
        local.mkdir(parents=True)
        for key, value in dv._data(found[0]).items():
            (local / key).write_text(value, encoding="utf-8")
        inside = mount["mountPath"].rstrip("/") + "/"
        for key, value in env.items():
            if value.startswith(inside):
                overrides[key] = str(local / value.removeprefix(inside))
    return overrides


def _rewrite(env: dict[str, str], hosts: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
    """Point in-cluster `name:port` addresses at local ones, then apply value overrides of existing keys."""
    out = {}
    for key, value in env.items():
        for cluster, local in hosts.items():
            value = re.sub(rf"(?<![\w.-]){re.escape(cluster)}(?!\d)", local, value)
        out[key] = value
    unknown = sorted(set(overrides) - set(env))
    assert not unknown, f"the contract may only change values of keys the pod has; not in the pod: {unknown}"
    out.update(overrides)
    return out


@pytest.fixture(scope="module")
async def stack(
    dv: ModuleType,
    rendered: dict[str, Any],
    kafka_bootstrap: str,
    mysql_server: tuple[str, int],
    mongo_url: str,
    elasticsearch_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    from devservers import ensure_mysql_database_async

    objs = rendered["kind"]
    suffix = uuid.uuid4().hex[:8]
    logs = tmp_path_factory.mktemp("contract")
    contracts = {s: _pod_contract(dv, objs, s) for s in SERVICES}
    local_ports = {s: free_port() for s in SERVICES}
    metrics_ports = {s: free_port() for s in SERVICES}
    mongo, es = urlsplit(mongo_url), urlsplit(elasticsearch_url)
    hosts = {
        "kafka:9092": kafka_bootstrap,
        "mysql:3306": f"{mysql_server[0]}:{mysql_server[1]}",
        "mongo:27017": f"{mongo.hostname}:{mongo.port or 27017}",
        "elasticsearch:9200": f"{es.hostname}:{es.port or 9200}",
        **{f"{s}:{contracts[s][1]}": f"127.0.0.1:{local_ports[s]}" for s in SERVICES},
    }
    skipped = {
        s: f"services/{s} has no __main__.py yet: nothing to start"
        for s in SERVICES
        if not (ROOT / "services" / s / "src" / s.replace("-", "_") / "__main__.py").is_file()
    }
    running: dict[str, Running] = {}
    topics: set[str] = set()
    databases: list[tuple[str, str]] = []
    mongo_dbs: set[str] = set()
    aliases: set[str] = set()
    for service in SERVICES:
        env, container_port, probes, grace = contracts[service]
        overrides = {
            "HTTP_PORT": str(local_ports[service]),
            "METRICS_PORT": str(metrics_ports[service]),
            "KAFKA_ENABLE_IDEMPOTENCE": "false",
            **_mounted_files(dv, objs, service, env, logs / "mounts"),
        }
        for key, value in env.items():
            if TOPIC_KEY.match(key):
                overrides[key] = f"{value}.deploy-{suffix}"
                topics |= {overrides[key], f"{overrides[key]}.dlq"}
            elif key == "KAFKA_CONSUMER_GROUP":
                overrides[key] = f"{value}-deploy-{suffix}"
            elif key in MONGO_DB_KEYS:
                overrides[key] = f"{value}_deploy_{suffix}"
                mongo_dbs.add(overrides[key])
            elif key == "SEARCH_INDEX_ALIAS":
                overrides[key] = f"{value}-deploy-{suffix}"
                aliases.add(overrides[key])
        if "DB_NAME" in env:
            overrides["DB_NAME"] = overrides["DB_USERNAME"] = f"deploy_{suffix}"
            databases.append((overrides["DB_NAME"], overrides["DB_USERNAME"]))
            await ensure_mysql_database_async(
                overrides["DB_NAME"], overrides["DB_USERNAME"], env["DB_PASSWORD"]
            )
        final = _rewrite(env, hosts, overrides)
        leftovers = [
            f"{k}={v}" for k, v in final.items() if re.search(r"\b(kafka|mysql|mongo|elasticsearch):\d", v)
        ]
        assert not leftovers, f"{service}: still pointing into the cluster: {leftovers}"
        running[service] = Running(
            service, final, local_ports[service], probes, grace, metrics_ports[service]
        )
        assert str(container_port) == env["HTTP_PORT"]

    for service, r in running.items():
        if service not in skipped:
            _start(r, logs)
    try:
        yield Stack(running, suffix, skipped)
    finally:
        for r in running.values():
            if r.process and r.process.poll() is None:
                os.killpg(r.process.pid, signal.SIGKILL)
                r.process.wait()
        await _clean_up(
            kafka_bootstrap, mysql_server, mongo_url, elasticsearch_url, topics, databases, mongo_dbs, aliases
        )


def _start(r: Running, logs: Path) -> None:
    """`python -m <package>` with exactly the pod's environment (plus PATH/HOME/LANG), nothing inherited."""
    base_env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    r.log = logs / f"{r.service}.log"
    with r.log.open("wb") as out:
        r.process = subprocess.Popen(
            [sys.executable, "-m", r.service.replace("-", "_")],
            env={**base_env, **r.env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=logs,
            start_new_session=True,
        )


async def _clean_up(
    bootstrap: str,
    mysql_server: tuple[str, int],
    mongo_url: str,
    es_url: str,
    topics: set[str],
    databases: list[tuple[str, str]],
    mongo_dbs: set[str],
    aliases: set[str],
) -> None:
    from consumer_runtime.testing import delete_topics
    from devservers import drop_mysql_database_async
    from pymongo import AsyncMongoClient

    await delete_topics(bootstrap, sorted(topics))
    for db, user in databases:
        await drop_mysql_database_async(db, user, port=mysql_server[1])
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        for name in mongo_dbs:
            await client.drop_database(name)
    finally:
        await client.close()
    async with httpx.AsyncClient(base_url=es_url, timeout=10) as es:
        indices = (await es.get("/_cat/indices", params={"format": "json"})).json()
        for index in indices:
            if any(index["index"].startswith(alias) for alias in aliases):
                await es.delete(f"/{index['index']}")


async def _wait_ready(r: Running) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    last = "no answer"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{r.port}", timeout=5) as client:
        while time.monotonic() < deadline:
            assert r.process is not None
            if r.process.poll() is not None:
                pytest.fail(f"{r.service} exited with {r.process.returncode}:\n{r.log_tail()}")
            try:
                answers = {path: (await client.get(path)) for path in set(r.probes.values())}
            except httpx.TransportError as exc:
                last = repr(exc)
            else:
                if all(a.status_code == 200 for a in answers.values()):
                    return
                last = "; ".join(f"{p} -> {a.status_code} {a.text[:300]}" for p, a in answers.items())
            await _sleep(0.5)
    pytest.fail(
        f"{r.service}: probes {r.probes} not all 200 within {START_DEADLINE_S}s: {last}\n{r.log_tail()}"
    )


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


@pytest.mark.parametrize("service", SERVICES)
async def test_deploy_service_answers_its_probes_with_the_pod_env(stack: Stack, service: str) -> None:
    if service in stack.skipped:
        pytest.skip(stack.skipped[service])
    r = stack.running[service]
    assert {"livenessProbe", "readinessProbe"} <= set(r.probes)
    await _wait_ready(r)


@pytest.mark.parametrize("service", SERVICES)
async def test_deploy_service_serves_metrics_on_its_metrics_port(stack: Stack, service: str) -> None:
    """What Prometheus scrapes (METRICS_PORT, the pod's `metrics` port): the metrics, and no API route."""
    if service in stack.skipped:
        pytest.skip(stack.skipped[service])
    r = stack.running[service]
    await _wait_ready(r)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{r.metrics_port}", timeout=5) as client:
        scraped = await client.get("/metrics")
        assert scraped.status_code == 200
        assert "# TYPE " in scraped.text
        for path in (*r.probes.values(), "/consumer/status", "/docs"):
            assert (await client.get(path)).status_code == 404, path


@pytest.mark.parametrize("service", [s for s in SERVICES if s != "gateway"])
async def test_deploy_service_takes_consumer_control_only_with_the_pod_internal_token(
    stack: Stack, service: str
) -> None:
    """The INTERNAL_TOKEN of the platform-internal Secret reaches the process: only with it is a consumer
    command accepted (resume: the consumer is running, so it changes nothing)."""
    if service in stack.skipped:
        pytest.skip(stack.skipped[service])
    r = stack.running[service]
    await _wait_ready(r)
    token = r.env["INTERNAL_TOKEN"]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{r.port}", timeout=5) as client:
        assert (await client.post("/consumer/resume")).status_code == 401
        admitted = await client.post("/consumer/resume", headers={"Authorization": f"Bearer {token}"})
        assert admitted.status_code == 200, admitted.text


@pytest.mark.parametrize("service", SERVICES)
def test_deploy_service_stops_within_its_grace_period(stack: Stack, service: str) -> None:
    """SIGTERM (what the kubelet sends after preStop) ends the process before the kubelet would SIGKILL it."""
    if service in stack.skipped:
        pytest.skip(stack.skipped[service])
    r = stack.running[service]
    assert r.process is not None
    assert r.process.poll() is None, r.log_tail()
    r.process.send_signal(signal.SIGTERM)
    try:
        code = r.process.wait(timeout=r.grace_s - 5)  # the preStop sleep (5 s) runs before SIGTERM
    except subprocess.TimeoutExpired:
        pytest.fail(f"{service} still running {r.grace_s - 5}s after SIGTERM:\n{r.log_tail()}")
    # uvicorn re-raises the SIGTERM after its graceful shutdown: exit 0 or "killed by SIGTERM" both are fine,
    # as long as the lifespan shutdown (consumer flush + commit + leave) completed first
    assert code in (0, -signal.SIGTERM), f"{service} exited with {code}:\n{r.log_tail()}"
    assert "Application shutdown complete" in r.log_tail(), r.log_tail()
