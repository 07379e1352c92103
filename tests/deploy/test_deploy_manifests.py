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
            assert not [k for k in cm.get("data", {}) if re.search(r"PASSWORD|TOKEN|SECRET|API_KEY", k)]
        secret_keys = {k for s in dv.find(objs, "Secret") for k in s.get("data", {})}
        assert {"ADMIN_TOKEN", "DB_PASSWORD", "MONGO_URL"} <= secret_keys
    cloud_secrets = {k for s in dv.find(rendered["cloud"], "Secret") for k in s.get("data", {})}
    assert {"KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"} <= cloud_secrets


def test_deploy_cloud_uses_sasl_ssl_and_replaces_every_dev_secret(
    dv: ModuleType, rendered: dict[str, Any]
) -> None:
    cloud, kind = rendered["cloud"], rendered["kind"]
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
    assert dv.env_key_errors(rendered[overlay], _known_env) == []


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
    _container(dv, kind_objs, "notifier")["livenessProbe"]["httpGet"]["port"] = "metrics"
    errors = dv.reference_errors(kind_objs)
    assert any("livenessProbe port 'metrics' is not a container port" in e for e in errors), errors


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
