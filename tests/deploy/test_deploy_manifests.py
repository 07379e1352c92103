"""Every overlay renders, validates strictly against the Kubernetes schemas and passes the cross-reference
checks; and each check catches the mistake it exists for (a deliberately broken manifest fails)."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("issue-ingestor", "log-sink", "search-indexer", "notifier", "gateway")


@pytest.mark.parametrize("overlay", ["kind", "cloud"])
def test_deploy_overlay_has_no_problems(dv: ModuleType, rendered: dict[str, Any], overlay: str) -> None:
    objs = rendered[overlay]
    assert {d["metadata"]["name"] for d in dv.platform_deployments(objs)} == set(SERVICES)
    assert dv.check_overlay(overlay, objs) == []


def _tracked_copy(tmp_path: Path, folder: str = "deploy/k8s") -> Path:
    """The files of ``folder`` that git tracks, copied as a fresh clone would have them (no ignored files)."""
    import shutil
    import subprocess

    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", folder],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert listed, f"git lists no file under {folder}"
    for name in listed:
        if (ROOT / name).is_file():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / name, tmp_path / name)
    return tmp_path / folder


@pytest.mark.parametrize("overlay", ["kind", "cloud"])
def test_deploy_overlay_renders_from_a_clean_checkout(dv: ModuleType, tmp_path: Path, overlay: str) -> None:
    """No git-ignored file (overlays/cloud/secrets/*.env) is needed: Secrets are referenced by name."""
    objs = dv.render_path(_tracked_copy(tmp_path) / "overlays" / overlay)
    assert {d["metadata"]["name"] for d in dv.platform_deployments(objs)} == set(SERVICES)
    if overlay == "cloud":
        assert dv.find(objs, "Secret") == []


def test_deploy_cloud_secrets_are_referenced_by_name_and_listed_in_the_contract(
    dv: ModuleType, rendered: dict[str, Any]
) -> None:
    cloud = rendered["cloud"]
    referenced = {
        src["secretRef"]["name"]
        for d in dv.platform_deployments(cloud)
        for src in dv.pod_spec(d)["containers"][0].get("envFrom", [])
        if "secretRef" in src
    } | {
        v["secret"]["secretName"]
        for d in dv.platform_deployments(cloud)
        for v in dv.pod_spec(d).get("volumes", [])
        if "secret" in v and not v["secret"].get("optional")
    }
    assert referenced == set(dv.cloud_secret_contract())
    # without the contract's Secrets the references dangle: the check sees it
    errors = dv.reference_errors(cloud)
    assert any("Secret 'kafka-sasl' does not exist" in e for e in errors), errors


@pytest.mark.parametrize("component", ["external-secrets", "keda", "monitoring", "kafka-topics"])
def test_deploy_component_has_no_problems(dv: ModuleType, component: str) -> None:
    assert dv.check_component(component) == []


def test_deploy_external_secrets_cover_the_contract_and_schemas_are_strict(dv: ModuleType) -> None:
    import copy

    objs = copy.deepcopy(dv.render("cloud", ["external-secrets"]))
    assert {e["spec"]["target"]["name"] for e in dv.find(objs, "ExternalSecret")} == set(
        dv.cloud_secret_contract()
    )
    sasl = dv.one(objs, "ExternalSecret", "kafka-sasl")
    sasl["spec"]["data"].pop()  # KAFKA_SASL_PASSWORD no longer synced
    sasl["spec"]["refreshInterval_"] = "1h"  # a misspelt field of the custom resource
    errors = dv.check_component("external-secrets", objs)
    assert any("ExternalSecret for 'kafka-sasl' gives keys" in e for e in errors), errors
    assert any("ExternalSecret/kafka-sasl" in e and "refreshInterval_" in e for e in errors), errors


def test_deploy_keda_scales_each_sink_on_its_registry_groups_and_topics(dv: ModuleType) -> None:
    """Each ScaledObject watches exactly the (group, topic) pairs libs/events says its sink consumes."""
    from platform_events import TOPICS

    objs = dv.render("cloud", ["keda"])
    for d in dv.platform_deployments(objs):
        name = d["metadata"]["name"]
        group = dv.container_env(dv.with_out_of_band(objs, "cloud"), d).get("KAFKA_CONSUMER_GROUP")
        if name == "gateway":
            assert not dv.find(objs, "ScaledObject", name)
            continue
        so = dv.one(objs, "ScaledObject", name)
        watched = {(t["metadata"]["consumerGroup"], t["metadata"]["topic"]) for t in so["spec"]["triggers"]}
        expected = {(group, spec.name) for spec in TOPICS.values() if group in spec.consumer_groups}
        assert watched == expected, name
        assert "replicas" not in d["spec"]


def test_deploy_catches_autoscaling_and_spread_mistakes(dv: ModuleType) -> None:
    import copy

    objs = dv.with_out_of_band(copy.deepcopy(dv.render("cloud", ["keda"])), "cloud")
    dv.one(objs, "Deployment", "gateway")["spec"]["replicas"] = 2  # the HPA owns it
    dv.one(objs, "ScaledObject", "log-sink")["spec"]["maxReplicaCount"] = 4
    dv.one(objs, "ScaledObject", "notifier")["spec"]["triggers"][0]["metadata"]["consumerGroup"] = "notifier"
    dv.pod_spec(dv.one(objs, "Deployment", "search-indexer"))["topologySpreadConstraints"].pop()
    errors = "\n".join(dv.policy_errors(objs))
    assert "Deployment/gateway: sets replicas while an autoscaler owns it" in errors
    assert "ScaledObject/log-sink: maxReplicaCount 4 > 3 partitions" in errors
    assert "ScaledObject/notifier: trigger group 'notifier'" in errors
    assert "Deployment/search-indexer: no topologySpreadConstraint on kubernetes.io/hostname" in errors


def test_deploy_catches_monitoring_mistakes(dv: ModuleType) -> None:
    import copy

    objs = copy.deepcopy(dv.render("cloud", ["monitoring"]))
    rule = dv.one(objs, "PrometheusRule", "kafka-platform")
    rule["spec"]["groups"][0]["rules"][0]["for"] = "1h"  # drifted from prometheus-alerts.yaml
    dv.one(objs, "PodMonitor", "kafka-exporter")["spec"]["podMetricsEndpoints"][0]["port"] = "http"
    # the platform's PodMonitor scrapes the API port: Prometheus may not reach it (and must not)
    dv.one(objs, "PodMonitor", "kafka-platform")["spec"]["podMetricsEndpoints"][0]["port"] = "http"
    scrape = dv.one(objs, "NetworkPolicy", "prometheus-scrape")
    scrape["spec"]["ingress"][0]["ports"] = [
        {"protocol": "TCP", "port": 8101},
        {"protocol": "TCP", "port": 9999},
    ]
    errors = "\n".join(dv.check_component("monitoring", objs))
    assert "group 'platform-consumers' differs" in errors
    assert "PodMonitor/kafka-exporter: Deployment/kafka-exporter has no port 'http'" in errors
    assert "Deployment/issue-ingestor: Prometheus may reach ['prometheus:8101', 'prometheus:9999']" in errors
    assert "Deployment/gateway: Prometheus may not reach its metrics port 'http'" in errors
    assert "only the metrics port (metrics, 9101)" in errors


def _expected_topics(control: str) -> dict[str, tuple[int, dict[str, str]]]:
    """topic -> (partitions, config) as the registry implies it: message topics, the activity log and every
    DLQ kept forever, the rest 7 days; the control topic compacted on one partition."""
    from platform_events import TOPICS

    forever = {"platform.messages.created", "platform.messages.updated", "platform.messages.deleted"}
    forever.add("platform.users.activity")
    out: dict[str, tuple[int, dict[str, str]]] = {}
    for spec in TOPICS.values():
        out[spec.name] = (spec.partitions, {"retention.ms": "-1" if spec.name in forever else "604800000"})
        if spec.consumer_groups:
            out[spec.dlq_topic] = (spec.partitions, {"retention.ms": "-1"})
    out[control] = (1, {"cleanup.policy": "compact"})
    return out


def test_deploy_kafka_topics_component_matches_the_registry(dv: ModuleType, rendered: dict[str, Any]) -> None:
    objs = dv.render("cloud", ["kafka-topics"])
    env = dv.container_env(objs, dv.one(objs, "Deployment", "notifier"))
    assert env["KAFKA_AUTO_CREATE_TOPICS"] == "false"
    stated = {
        t["spec"]["topicName"]: (t["spec"]["partitions"], t["spec"]["config"])
        for t in dv.find(objs, "KafkaTopic")
    }
    assert stated == _expected_topics(env["KAFKA_CONTROL_TOPIC"])
    assert {t["spec"]["replicas"] for t in dv.find(objs, "KafkaTopic")} == {
        int(env["KAFKA_TOPIC_REPLICATION"])
    }
    assert all(t["metadata"]["labels"].get("strimzi.io/cluster") for t in dv.find(objs, "KafkaTopic"))


def test_deploy_topic_job_script_creates_what_the_component_states(
    dv: ModuleType, rendered: dict[str, Any], tmp_path: Path
) -> None:
    """create-topics.sh run against a recording kafka-topics.sh, with the kind Job's environment."""
    import subprocess

    objs = rendered["kind"]
    env = dv.container_env(objs, dv.one(objs, "Job", "kafka-topics"))
    for tool in ("kafka-topics.sh", "kafka-configs.sh"):
        stub = tmp_path / tool
        stub.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> "$RECORD"\n')
        stub.chmod(0o755)
    record = tmp_path / "record"
    script = ROOT / "deploy" / "k8s" / "components" / "dev-infra" / "kafka" / "create-topics.sh"
    done = subprocess.run(
        ["bash", str(script)],
        env={"PATH": "/usr/bin:/bin", **env, "KAFKA_BIN": str(tmp_path), "RECORD": str(record)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    created: dict[str, tuple[int, dict[str, str]]] = {}
    for line in record.read_text().splitlines():
        words = line.split()
        if "--create" in words:
            config = dict(w.split("=", 1) for w in words[words.index("--config") + 1 :: 2])
            created[words[words.index("--topic") + 1]] = (int(words[words.index("--partitions") + 1]), config)
    assert created == _expected_topics(env["KAFKA_CONTROL_TOPIC"])
    altered = {  # topics created earlier with the broker default get the retention rule too
        words[words.index("--entity-name") + 1]: words[words.index("--add-config") + 1]
        for words in (line.split() for line in record.read_text().splitlines())
        if "--alter" in words
    }
    assert altered == {
        topic: "retention.ms=-1"
        for topic in created
        if topic.startswith("platform.messages.") and not topic.endswith(".dlq")
    }, altered


def test_deploy_cloud_egress_names_its_cidrs(dv: ModuleType, rendered: dict[str, Any]) -> None:
    import copy

    objs = copy.deepcopy(rendered["cloud"])
    cidrs = {
        np["metadata"]["name"]: np["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"]
        for np in dv.find(objs, "NetworkPolicy")
        if np["spec"].get("egress") and "ipBlock" in np["spec"]["egress"][0]["to"][0]
    }
    named = dv.env_file(ROOT / "deploy" / "k8s" / "overlays" / "cloud" / "config" / "egress-cidrs.env")
    assert set(cidrs.values()) == set(named.values())
    dv.one(objs, "NetworkPolicy", "search-indexer-egress")["spec"]["egress"][0]["to"][0]["ipBlock"][
        "cidr"
    ] = "0.0.0.0/0"
    errors = dv.network_errors(dv.with_out_of_band(objs, "cloud"), "cloud")
    assert any("NetworkPolicy/search-indexer-egress: egress to 0.0.0.0/0" in e for e in errors), errors


def test_deploy_cloud_datastore_clients_use_tls_and_their_secrets(
    dv: ModuleType, rendered: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settings each service builds from its cloud pod's environment (Secrets from the contract): MySQL
    over verified TLS, Elasticsearch with the API key over https, MongoDB URLs with TLS on, the optional CA
    Secret mounted where the settings point."""
    import ssl
    from urllib.parse import parse_qs, urlsplit

    from issue_ingestor.config import Settings as IngestorSettings
    from search_indexer.config import Settings as IndexerSettings

    cloud = dv.with_out_of_band(rendered["cloud"], "cloud")

    def env_of(name: str) -> dict[str, str]:
        env: dict[str, str] = dv.container_env(cloud, dv.one(cloud, "Deployment", name))
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return env

    env_of("issue-ingestor")
    context = IngestorSettings().db_ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    env_of("search-indexer")
    kwargs = IndexerSettings().es_kwargs()
    assert kwargs["hosts"][0].startswith("https://")
    assert kwargs["api_key"] == "CHANGE-ME"
    for name in ("log-sink", "notifier", "gateway"):
        url = urlsplit(env_of(name)["MONGO_URL"])
        assert url.scheme == "mongodb+srv" or parse_qs(url.query).get("tls") == ["true"], name
        assert parse_qs(url.query).get("tls", ["true"]) == ["true"], name
    for d in dv.platform_deployments(cloud):
        mounts = {m["mountPath"]: m["name"] for m in dv.pod_spec(d)["containers"][0]["volumeMounts"]}
        assert mounts.get("/etc/platform/tls") == "datastore-ca", d["metadata"]["name"]


def test_deploy_base_renders_and_validates(dv: ModuleType) -> None:
    objs = dv.render_path(ROOT / "deploy" / "k8s" / "base")
    assert dv.schema_errors(objs) == []
    # the base alone carries no infrastructure: no StatefulSet, no Job
    assert not [o for o in objs if o["kind"] in ("StatefulSet", "Job")]


def test_deploy_every_object_lands_in_the_platform_namespace(rendered: dict[str, Any]) -> None:
    for overlay, objs in rendered.items():
        stray = [
            f"{o['kind']}/{o['metadata']['name']}"
            for o in objs
            if o["kind"] != "Namespace" and o["metadata"].get("namespace") != "platform"
        ]
        assert stray == [], overlay


def test_deploy_secrets_never_in_configmaps(dv: ModuleType, rendered: dict[str, Any]) -> None:
    for objs in rendered.values():
        for cm in dv.find(objs, "ConfigMap"):
            assert not [
                k
                for k in cm.get("data", {})
                if re.search(r"PASSWORD|TOKEN|SECRET|API_KEY", k) and not k.endswith("_FILE")
            ]
    kind_secret_keys = {k for s in dv.find(rendered["kind"], "Secret") for k in s.get("data", {})}
    assert {"ADMIN_TOKEN", "DB_PASSWORD", "MONGO_URL"} <= kind_secret_keys
    cloud_secret_keys = set().union(*dv.cloud_secret_contract().values())
    assert {
        "ADMIN_TOKEN",
        "DB_PASSWORD",
        "MONGO_URL",
        "KAFKA_SASL_USERNAME",
        "KAFKA_SASL_PASSWORD",
    } <= cloud_secret_keys
    assert "ELASTICSEARCH_API_KEY" in cloud_secret_keys


def test_deploy_cloud_uses_sasl_ssl_and_replaces_every_dev_secret(
    dv: ModuleType, rendered: dict[str, Any]
) -> None:
    cloud, kind = dv.with_out_of_band(rendered["cloud"], "cloud"), rendered["kind"]
    for d in dv.platform_deployments(cloud):
        env = dv.container_env(cloud, d)
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["KAFKA_SASL_MECHANISM"] in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
        assert env["KAFKA_SASL_USERNAME"]
        assert env["KAFKA_SASL_PASSWORD"]
        assert "kafka:9092" not in env.values()
        dev = dv.container_env(kind, dv.one(kind, "Deployment", d["metadata"]["name"]))
        for key in ("ADMIN_TOKEN", "DB_PASSWORD", "MONGO_URL"):
            if key in env:
                assert env[key] != dev[key], f"{d['metadata']['name']}: {key} still has the dev value"
    assert dv.find(cloud, "Ingress")
    assert not dv.find(cloud, "StatefulSet")


def test_deploy_kind_node_ports_match_the_cluster_port_mappings(
    dv: ModuleType, rendered: dict[str, Any]
) -> None:
    cluster = yaml.safe_load((ROOT / "deploy" / "k8s" / "kind-cluster.yaml").read_text())
    mapped = {m["containerPort"] for n in cluster["nodes"] for m in n.get("extraPortMappings", [])}
    node_ports = {
        (s["metadata"]["name"], p["nodePort"])
        for s in dv.find(rendered["kind"], "Service")
        for p in s["spec"]["ports"]
        if "nodePort" in p
    }
    assert node_ports == {("gateway", 30080), ("kafka-external", 30092), ("elasticsearch-external", 30200)}
    assert mapped == {port for _, port in node_ports}
    kafka = dv.one(rendered["kind"], "StatefulSet", "kafka")
    advertised = dv.container_env(rendered["kind"], kafka)["KAFKA_ADVERTISED_LISTENERS"]
    assert "EXTERNAL://localhost:30092" in advertised


def test_deploy_topic_job_creates_every_topic_with_the_configured_partitions(
    dv: ModuleType, rendered: dict[str, Any]
) -> None:
    from platform_events import TOPICS

    objs = rendered["kind"]
    job = dv.one(objs, "Job", "kafka-topics")
    env = dv.container_env(objs, job)
    scripts = [
        c for c in dv.find(objs, "ConfigMap") if c["metadata"]["name"].startswith("kafka-topics-script")
    ]
    script = scripts[0]["data"]["create-topics.sh"]
    variables = set(re.findall(r"\$\{(KAFKA_[A-Z_]+)", script))
    named = {
        env[v]
        for v in variables
        if v.startswith(("KAFKA_TOPIC_", "KAFKA_LOG_TOPIC", "KAFKA_CONTROL_TOPIC"))
        and v not in ("KAFKA_TOPIC_PARTITIONS", "KAFKA_TOPIC_REPLICATION")
    }
    expected = {spec.name for spec in TOPICS.values()} | {env["KAFKA_CONTROL_TOPIC"]}
    assert named == expected, "the Job must create every topic of the registry and the control topic"
    assert "cleanup.policy=compact" in script
    consumed = {spec.name for spec in TOPICS.values() if spec.consumer_groups}
    consumed_block = script.split("consumed=(")[1].split(")")[0]
    assert {env[v] for v in re.findall(r"\$\{(KAFKA_[A-Z_]+)", consumed_block)} == consumed
    assert '"$topic.dlq"' in script
    # retention rule: the message topics (the rebuild's event log) keep everything, also when they existed
    keep = script.split("--add-config retention.ms=-1")[0].rsplit("for topic in", 1)[1]
    assert {env[v] for v in re.findall(r"\$\{(KAFKA_[A-Z_]+)", keep)} == {
        spec.name for spec in TOPICS.values() if spec.name.startswith("platform.messages.")
    }
    assert int(env["KAFKA_TOPIC_PARTITIONS"]) >= max(spec.partitions for spec in TOPICS.values())


def _settings_env_names(module_name: str) -> set[str]:
    module = importlib.import_module(module_name)
    names: set[str] = set()
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if issubclass(cls, BaseSettings) and cls.__module__ == module.__name__:
            for field, info in cls.model_fields.items():
                names.add(field.upper())
                if isinstance(info.validation_alias, str):
                    names.add(info.validation_alias.upper())
    if not names:
        raise LookupError(f"{module_name} defines no settings class")
    return names


def _wide_logging_env_names() -> set[str]:
    import wide_logging.config

    source = inspect.getsource(wide_logging.config)
    return set(re.findall(r'(?:text|flag|number)\("([A-Z0-9_]+)"', source))


def _known_env(service: str) -> set[str]:
    names = _settings_env_names(f"{service.replace('-', '_')}.config")
    if service == "gateway":  # request wide events through wide_logging (WideLoggingConfig.from_env)
        names |= _wide_logging_env_names()
    return names


@pytest.mark.parametrize("overlay", ["kind", "cloud"])
def test_deploy_every_variable_is_one_a_service_reads(
    dv: ModuleType, rendered: dict[str, Any], overlay: str
) -> None:
    """A renamed or misspelt variable (KAFKA_BOOTSTRAP_SERVER, DB_PASS...) would be silently ignored by
    pydantic-settings; here it fails, checked against each service's own settings class."""
    assert dv.env_key_errors(dv.with_out_of_band(rendered[overlay], overlay), _known_env) == []


# --------------------------------------------------------------------------- the checks bite
def _container(dv: ModuleType, objs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return dv.pod_spec(dv.one(objs, "Deployment", name))["containers"][0]


def test_deploy_catches_a_wrong_service_selector(dv: ModuleType, kind_objs: list[dict[str, Any]]) -> None:
    dv.one(kind_objs, "Service", "notifier")["spec"]["selector"]["app.kubernetes.io/name"] = "notifer"
    errors = dv.reference_errors(kind_objs)
    assert any("Service/notifier: selector" in e for e in errors), errors


def test_deploy_catches_a_missing_configmap_key(dv: ModuleType, kind_objs: list[dict[str, Any]]) -> None:
    cm = next(
        c
        for c in dv.find(kind_objs, "ConfigMap")
        if c["metadata"]["name"].startswith("issue-ingestor-config")
    )
    del cm["data"]["DB_NAME"]  # mysql's MYSQL_DATABASE comes from this key
    errors = dv.reference_errors(kind_objs)
    assert any("has no key 'DB_NAME'" in e for e in errors), errors


def test_deploy_catches_a_missing_configmap(dv: ModuleType, kind_objs: list[dict[str, Any]]) -> None:
    _container(dv, kind_objs, "log-sink")["envFrom"][0]["configMapRef"]["name"] = "kafka-confg"
    errors = dv.reference_errors(kind_objs)
    assert any("ConfigMap 'kafka-confg' does not exist" in e for e in errors), errors


def test_deploy_catches_a_misspelt_variable(dv: ModuleType, kind_objs: list[dict[str, Any]]) -> None:
    cm = next(
        c
        for c in dv.find(kind_objs, "ConfigMap")
        if c["metadata"]["name"].startswith("issue-ingestor-config")
    )
    cm["data"]["DB_HOSTNAME"] = cm["data"].pop("DB_HOST")
    errors = dv.env_key_errors(kind_objs, _known_env)
    assert any("DB_HOSTNAME" in e for e in errors), errors


@pytest.mark.parametrize(("probe", "path"), [("readinessProbe", "/ready"), ("livenessProbe", "/readyz")])
def test_deploy_catches_a_probe_on_a_wrong_path(
    dv: ModuleType, kind_objs: list[dict[str, Any]], probe: str, path: str
) -> None:
    _container(dv, kind_objs, "gateway")[probe]["httpGet"]["path"] = path
    errors = dv.policy_errors(kind_objs)
    assert any(f"Deployment/gateway: {probe} path '{path}'" in e for e in errors), errors


def test_deploy_catches_a_probe_on_a_missing_port(dv: ModuleType, kind_objs: list[dict[str, Any]]) -> None:
    _container(dv, kind_objs, "notifier")["livenessProbe"]["httpGet"]["port"] = "admin"
    errors = dv.reference_errors(kind_objs)
    assert any("livenessProbe port 'admin' is not a container port" in e for e in errors), errors


def test_deploy_catches_http_port_drift(dv: ModuleType, kind_objs: list[dict[str, Any]]) -> None:
    _container(dv, kind_objs, "log-sink")["ports"][0]["containerPort"] = 8080
    errors = dv.policy_errors(kind_objs) + dv.reference_errors(kind_objs)
    assert any("HTTP_PORT='8102' but the http port is 8080" in e for e in errors), errors


def test_deploy_catches_unknown_fields_and_api_versions(
    dv: ModuleType, kind_objs: list[dict[str, Any]]
) -> None:
    _container(dv, kind_objs, "gateway")["livenessprobe"] = {}
    dv.one(kind_objs, "PodDisruptionBudget", "notifier")["apiVersion"] = "policy/v1beta1"
    errors = dv.schema_errors(kind_objs)
    assert any("Deployment/gateway" in e and "livenessprobe" in e for e in errors), errors
    assert any("PodDisruptionBudget/notifier: no schema for policy/v1beta1" in e for e in errors), errors


def test_deploy_catches_weak_pods(dv: ModuleType, kind_objs: list[dict[str, Any]]) -> None:
    c = _container(dv, kind_objs, "search-indexer")
    c["image"] = "kafka-platform/search-indexer:latest"
    del c["resources"]["limits"]
    c["securityContext"]["readOnlyRootFilesystem"] = False
    dv.pod_spec(dv.one(kind_objs, "Deployment", "search-indexer"))["terminationGracePeriodSeconds"] = 30
    dv.one(kind_objs, "Deployment", "issue-ingestor")["spec"]["replicas"] = 4
    errors = "\n".join(dv.policy_errors(kind_objs))
    for expected in (
        "is not pinned",
        "resources.limits.cpu",
        "readOnlyRootFilesystem must be true",
        "terminationGracePeriodSeconds 30",
        "4 replicas > 3 partitions",
    ):
        assert expected in errors


def test_deploy_catches_a_missing_pdb_and_hpa_target(dv: ModuleType, kind_objs: list[dict[str, Any]]) -> None:
    kind_objs.remove(dv.one(kind_objs, "PodDisruptionBudget", "log-sink"))
    dv.one(kind_objs, "HorizontalPodAutoscaler", "gateway")["spec"]["scaleTargetRef"]["name"] = "gateway-api"
    errors = dv.policy_errors(kind_objs) + dv.reference_errors(kind_objs)
    assert any("Deployment/log-sink: no PodDisruptionBudget" in e for e in errors), errors
    assert any("scaleTargetRef Deployment/gateway-api does not exist" in e for e in errors), errors


def test_deploy_catches_a_too_open_network(dv: ModuleType, kind_objs: list[dict[str, Any]]) -> None:
    # log-sink may now reach MySQL, and anyone may call notifier
    egress = dv.one(kind_objs, "NetworkPolicy", "issue-ingestor-egress")
    egress["spec"]["podSelector"] = {
        "matchExpressions": [
            {"key": "app.kubernetes.io/name", "operator": "In", "values": ["issue-ingestor", "log-sink"]}
        ]
    }
    dv.one(kind_objs, "NetworkPolicy", "notifier")["spec"]["ingress"][0].pop("from")
    errors = dv.network_errors(kind_objs, "kind")
    assert any("Deployment/log-sink: egress reaches" in e and "mysql" in e for e in errors), errors
    assert any("Deployment/notifier: ingress from" in e for e in errors), errors


def test_deploy_kind_up_waits_for_everything_the_overlay_runs(
    dv: ModuleType, rendered: dict[str, Any]
) -> None:
    script = (ROOT / "deploy" / "k8s" / "kind-up.sh").read_text()
    services = re.search(r"^services=\(([^)]*)\)", script, re.M)
    statefulsets = re.search(r"^for sts in ([^;]*);", script, re.M)
    assert services
    assert statefulsets
    objs = rendered["kind"]
    assert set(services.group(1).split()) == {d["metadata"]["name"] for d in dv.find(objs, "Deployment")}
    assert set(statefulsets.group(1).split()) == {s["metadata"]["name"] for s in dv.find(objs, "StatefulSet")}
    assert "job/kafka-topics" in script


@pytest.mark.parametrize(
    "script",
    [
        "deploy/k8s/kind-up.sh",
        "deploy/k8s/kind-down.sh",
        "deploy/k8s/components/dev-infra/kafka/create-topics.sh",
        "deploy/docker/install-service.sh",
    ],
)
def test_deploy_shell_scripts_parse(script: str) -> None:
    import subprocess

    done = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
