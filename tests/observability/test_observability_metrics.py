"""The Grafana dashboard and the Prometheus alert rules of deploy/observability/ are valid, and every metric
(and label) they query exists on the /metrics of the running services.

The gateway and the four services run as real processes (``python -m <service>``, as in the Procfile) over
the local servers with topic names, a consumer group prefix, databases and an index of this test's own; one
valid and one invalid record go through each consumed topic (so the counters, histograms and DLQ series
exist with their labels), then every /metrics is scraped. Everything is deleted afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from consumer_runtime.testing import delete_topics, produce, topic_env, wait_until
from devservers import free_port
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "observability" / "grafana-dashboard.json"
ALERTS = ROOT / "deploy" / "observability" / "prometheus-alerts.yaml"
#: Labels Prometheus adds to every scraped series (target labels) and the histogram bucket label.
TARGET_LABELS = {"instance", "job", "le"}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "inf", "nan",
}  # fmt: skip
SEVERITIES = {"info", "warning", "critical"}


# ============================================================================================ PromQL helpers
def _strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (identifiers that are not functions, keywords or labels)."""
    text = _strip_strings(expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges / subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)\b(?!\s*\()", text):
        word = match.group(1)
        if word.lower() not in PROMQL_WORDS and not re.fullmatch(r"\d+\w*", word):
            names.add(word)
    return names


def label_names(expr: str) -> set[str]:
    """Labels an expression groups or matches on."""
    text = _strip_strings(expr)
    labels: set[str] = set()
    for clause in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text):
        labels |= {part.strip() for part in clause.split(",") if part.strip()}
    for matchers in re.findall(r"\{([^}]*)\}", text):
        labels |= set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matchers))
    return labels


def balanced(expr: str) -> bool:
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for char in _strip_strings(expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


@dataclass
class Exposition:
    """What the services' /metrics expose: every series name and the labels seen on it."""

    names: set[str] = field(default_factory=set)
    labels: dict[str, set[str]] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)

    def add(self, text: str) -> None:
        for family in text_string_to_metric_families(text):
            suffixes = {"counter": ["_total", "_created"], "histogram": ["_bucket", "_sum", "_count"]}
            for name in [family.name] + [family.name + s for s in suffixes.get(family.type, [])]:
                self.names.add(name)
                self.labels.setdefault(name, set())
            for sample in family.samples:
                self.names.add(sample.name)
                self.labels.setdefault(sample.name, set()).update(sample.labels)
                self.samples[sample.name] = self.samples.get(sample.name, 0) + 1


def check_expr(expr: str, exposition: Exposition, where: str) -> set[str]:
    assert balanced(expr), f"{where}: unbalanced brackets in {expr!r}"
    names = metric_names(expr)
    assert names, f"{where}: no metric in {expr!r}"
    missing = names - exposition.names
    assert not missing, f"{where}: metrics not exported by any service: {sorted(missing)}"
    if any(not exposition.samples.get(name) for name in names):
        return names  # a labelled family without series yet (e.g. no retry happened): labels unknown
    known = set(TARGET_LABELS)
    for name in names:
        known |= exposition.labels.get(name, set())
    unknown = label_names(expr) - known - {"__name__"}
    assert not unknown, f"{where}: labels {sorted(unknown)} are on none of {sorted(names)}"
    return names


def dashboard_exprs() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            out.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            inner = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
            assert inner, query
            out.append((f"variable {var['name']}", f"max by ({inner.group(2)}) ({inner.group(1)})"))
    return out


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


# ============================================================================================ static checks
def test_promql_helpers() -> None:
    expr = 'sum by (group, topic) (rate(a_total{x=~"b|c", y!="z"}[5m])) / on (group) b_bucket > 0.5'
    assert metric_names(expr) == {"a_total", "b_bucket"}
    assert label_names(expr) == {"group", "topic", "x", "y"}
    assert balanced(expr)
    assert not balanced("sum(rate(x[5m])")
    assert metric_names(
        'histogram_quantile(0.99, sum by (le) (rate(h_bucket{g=~"$group"}[$__rate_interval])))'
    ) == {"h_bucket"}


def test_dashboard_is_a_valid_grafana_dashboard() -> None:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert board["uid"]
    assert board["title"]
    assert isinstance(board["schemaVersion"], int)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "group"} <= variables
    titles = " ".join(p["title"].lower() for p in board["panels"])
    for topic in ("per topic", "lag per group", "lag per partition", "partition distribution", "rebalances"):
        assert topic in titles, topic  # seed 004's list
    for topic in ("batch size", "flush latency", "dead letters"):
        assert topic in titles, topic
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid)
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["refId"]
            assert target["expr"].strip()


def test_alert_rules_are_valid() -> None:
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for wanted in ("ConsumerLagGrowing", "DeadLettersArriving", "ConsumerStuck", "DependencyNotReady"):
        assert wanted in names  # the issue's list: lag growing, DLQ rate, consumer stuck, readiness false
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule[
            "alert"
        ]
        assert re.fullmatch(r"\d+[smhd]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]
        assert balanced(rule["expr"]), rule["alert"]
        for text in rule["annotations"].values():
            assert text.count("{{") == text.count("}}"), rule["alert"]


# ================================================================================ the running services
@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path


def _start(name: str, module: str, env: dict[str, str], logs: Path, port: int) -> Proc:
    log = logs / f"{name}.log"
    full = {**os.environ, **env, "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(port), "LOG_JSON": "false"}
    full["LOG_LEVEL"] = "WARNING"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", module], env=full, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
    return Proc(name, process, f"http://127.0.0.1:{port}", log)


def _stop(procs: list[Proc]) -> None:
    for p in procs:
        if p.process.poll() is None:
            p.process.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.process.kill()
            p.process.wait(timeout=10)


async def _json(url: str, headers: dict[str, str] | None = None) -> Any:
    """The JSON of a 200 answer, else None (also while the process is still starting)."""
    try:
        async with httpx.AsyncClient(timeout=5, headers=headers) as client:
            response = await client.get(url)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


@pytest.fixture(scope="module")
def obs_prefix() -> str:
    return f"obs-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def obs_mysql(mysql_server: tuple[str, int], obs_prefix: str) -> Iterator[dict[str, str]]:
    from devservers import drop_mysql_database, ensure_mysql_database

    host, port = mysql_server
    db, user = obs_prefix.replace("-", "_"), obs_prefix.replace("-", "_")[-12:] + "_u"
    ensure_mysql_database(db, user, "obs-test-pw", port=port)
    yield {"DB_HOST": f"{host}:{port}", "DB_NAME": db, "DB_USERNAME": user, "DB_PASSWORD": "obs-test-pw"}
    drop_mysql_database(db, user, port=port)


@pytest.fixture(scope="module")
async def exposition(
    kafka_bootstrap: str,
    mongo_url: str,
    elasticsearch_url: str,
    obs_mysql: dict[str, str],
    obs_prefix: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Exposition]:
    p = obs_prefix
    topics = topic_env(lambda default: f"{p}-{default}")
    kafka = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_ENABLE_IDEMPOTENCE": "false",
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "MQ_BATCH_TIMEOUT_MS": "100",
        "KAFKA_CONTROL_TOPIC": f"{p}-control",
    }
    alias, mongo_dbs = f"{p}-messages", [f"{p}_logs".replace("-", "_"), f"{p}_ntf".replace("-", "_")]
    services = {
        "issue-ingestor": ("issue_ingestor", {**obs_mysql, "DB_POOL_SIZE": "2"}),
        "log-sink": (
            "log_sink",
            {"MONGO_URL": mongo_url, "LOG_MONGO_DB": mongo_dbs[0], "LOG_RETENTION_DAYS": "0"},
        ),
        "search-indexer": (
            "search_indexer",
            {
                "ELASTICSEARCH_URL": elasticsearch_url,
                "SEARCH_INDEX_ALIAS": alias,
                "SEARCH_INDEX_REPLICAS": "0",
            },
        ),
        "notifier": ("notifier", {"MONGO_URL": mongo_url, "NOTIFIER_MONGO_DB": mongo_dbs[1]}),
    }
    logs = tmp_path_factory.mktemp("observability-logs")
    procs: list[Proc] = []
    try:
        ports = {name: free_port() for name in ["gateway", *services]}
        urls = {f"{n.replace('-', '_').upper()}_URL": f"http://127.0.0.1:{ports[n]}" for n in services}
        # the gateway first: it creates the topics (+ DLQs, control topic) the services subscribe to
        gateway_env = {**kafka, **topics, **urls, "ADMIN_TOKEN": "obs-token", "WIDE_LOGGING_ENABLED": "false"}
        gateway = _start("gateway", "gateway", gateway_env, logs, ports["gateway"])
        procs.append(gateway)

        async def topics_created() -> bool:
            listed = await _json(f"{gateway.url}/api/v1/topics", {"Authorization": "Bearer obs-token"})
            have = {t["name"] for t in (listed or {}).get("topics", [])}
            issues_dlq = f"{topics['KAFKA_TOPIC_CHATBOT_ISSUES']}.dlq"
            return set(topics.values()) | {f"{p}-control", issues_dlq} <= have

        await wait_until(topics_created, timeout=60, interval=0.3, what="gateway up with its topics")
        for name, (module, extra) in services.items():
            env = {**kafka, **topics, **extra, "KAFKA_CONSUMER_GROUP": f"{p}-{name}"}
            procs.append(_start(name, module, env, logs, ports[name]))

        async def assigned() -> bool:
            statuses = [await _json(f"{proc.url}/consumer/status") for proc in procs[1:]]
            return all(s and s["assignment"] for s in statuses)

        await wait_until(assigned, timeout=90, interval=0.5, what="every consumer assigned")
        issue = {"issue": f"{p}_1", "processType": "장애접수", "modeType": "프레스", "modeLogId": "L1"}
        message = {
            "event_type": "message.created",
            "event_id": f"evt_{p}",
            "timestamp": 1697234567890,
            "payload": {
                "message_id": f"msg_{p}",
                "channel_id": "ch_dev",
                "author_id": "user_001",
                "content": "관측 테스트",
                "mentions": ["user_002"],
            },
        }
        wide = {"event_id": f"evt_{p}", "timestamp": "2026-11-23T10:00:00Z", "service": "obs", "status": 200}
        for var, good in (
            ("KAFKA_TOPIC_CHATBOT_ISSUES", issue),
            ("KAFKA_TOPIC_MESSAGES_CREATED", message),
            ("KAFKA_LOG_TOPIC", wide),
        ):
            await produce(kafka_bootstrap, topics[var], [json.dumps(good).encode(), b"{not json"])

        async def processed() -> bool:
            for proc in procs[1:]:
                status = await _json(f"{proc.url}/consumer/status")
                counts = (status or {}).get("counts", {})
                if counts.get("stored", 0) < 1 or counts.get("dead_lettered", 0) < 1:
                    return False
            return True

        await wait_until(processed, timeout=60, interval=0.5, what="a good and a bad record through each")
        result = Exposition()
        async with httpx.AsyncClient(timeout=30) as client:
            for proc in procs:
                response = await client.get(f"{proc.url}/metrics")
                assert response.status_code == 200, proc.name
                result.add(response.text)
        yield result
    except BaseException:
        for proc in procs:
            sys.stderr.write(f"--- {proc.name} log\n{proc.log.read_text(errors='replace')[-3000:]}\n")
        raise
    finally:
        _stop(procs)
        await _cleanup(kafka_bootstrap, mongo_url, elasticsearch_url, p, mongo_dbs, alias)


async def _cleanup(
    bootstrap: str, mongo_url: str, es_url: str, prefix: str, dbs: list[str], alias: str
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from pymongo import AsyncMongoClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(prefix)]
    finally:
        await admin.close()
    await delete_topics(bootstrap, mine)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        for db in dbs:
            await mongo.drop_database(db)
    finally:
        await mongo.close()
    async with httpx.AsyncClient(base_url=es_url, timeout=30) as es:
        with contextlib.suppress(httpx.HTTPError):
            for index in (await es.get(f"/_cat/indices/{alias}*", params={"format": "json"})).json():
                await es.delete(f"/{index['index']}")


def test_dashboard_metrics_exist_on_the_services(exposition: Exposition) -> None:
    used: set[str] = set()
    for where, expr in dashboard_exprs():
        used |= check_expr(expr, exposition, where)
    # the core consumer series really carry data (not only HELP lines)
    for name in (
        "platform_consumer_records_consumed_total",
        "platform_consumer_records_stored_total",
        "platform_consumer_dlq_total",
        "platform_consumer_lag",
        "platform_consumer_assigned_partitions",
        "platform_consumer_rebalances_total",
        "platform_consumer_batch_size_bucket",
        "platform_consumer_flush_seconds_bucket",
        "gateway_dependency_ready",
    ):
        assert name in used, name
        assert exposition.samples.get(name, 0) > 0, name
    assert {"group", "topic", "partition"} <= exposition.labels["platform_consumer_lag"]


def test_alert_metrics_exist_on_the_services(exposition: Exposition) -> None:
    for rule in alert_rules():
        check_expr(rule["expr"], exposition, f"alert {rule['alert']}")
