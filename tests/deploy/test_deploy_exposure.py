"""What each deployment exposes, and to whom: the cloud Ingress routes the public API only, the gateway
requires tokens (cloud: from an OIDC provider, never open), Prometheus reaches only the metrics ports, the
backends' API ports only the gateway, INTERNAL_TOKEN comes from one Secret. Each check of deploy/validate.py
is shown to catch the mistake it exists for."""

from __future__ import annotations

import copy
from types import ModuleType
from typing import Any

import pytest

PORTS = {
    "gateway": (8000, 9100),
    "issue-ingestor": (8101, 9101),
    "log-sink": (8102, 9102),
    "search-indexer": (8103, 9103),
    "notifier": (8104, 9104),
}


def _container(dv: ModuleType, objs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return dv.pod_spec(dv.one(objs, "Deployment", name))["containers"][0]


def _config(dv: ModuleType, objs: list[dict[str, Any]], name: str) -> dict[str, str]:
    """The data of ``<name>-config`` (generated with a hash suffix in the rendered overlay)."""
    found = [c for c in dv.find(objs, "ConfigMap") if c["metadata"]["name"].startswith(f"{name}-config")]
    assert len(found) == 1
    data: dict[str, str] = found[0]["data"]
    return data


@pytest.mark.parametrize("overlay", ["kind", "cloud"])
def test_deploy_every_pod_serves_metrics_on_its_own_port(
    dv: ModuleType, rendered: dict[str, Any], overlay: str
) -> None:
    objs = dv.with_out_of_band(rendered[overlay], overlay)
    for d in dv.platform_deployments(objs):
        name = d["metadata"]["name"]
        http, metrics = PORTS[name]
        env = dv.container_env(objs, d)
        assert (env["HTTP_PORT"], env["METRICS_PORT"]) == (str(http), str(metrics))
        assert dv._port_of(dv.pod_spec(d)["containers"][0], "metrics") == metrics
        assert d["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(metrics)
        # the API port: the gateway from anywhere, each backend from the gateway only; never the metrics port
        caller = "anywhere" if name == "gateway" else "gateway"
        assert dv.ingress_ports(objs, d, caller) == {http}, name


def test_deploy_cloud_gateway_requires_tokens_from_the_oidc_provider(
    dv: ModuleType, rendered: dict[str, Any]
) -> None:
    cloud = dv.with_out_of_band(rendered["cloud"], "cloud")
    env = dv.container_env(cloud, dv.one(cloud, "Deployment", "gateway"))
    assert env["GATEWAY_AUTH"] == "required"
    assert env["DEPLOY_ENVIRONMENT"] == "cloud"
    assert env["OIDC_ISSUER"].startswith("https://")
    assert env["OIDC_JWKS_URL"].startswith("https://")
    assert env["OIDC_AUDIENCE"]
    assert env["AUTH_API_KEYS_FILE"] == "/etc/gateway/auth/api-keys.json"
    kind = rendered["kind"]
    assert dv.container_env(kind, dv.one(kind, "Deployment", "gateway"))["GATEWAY_AUTH"] == "required"
    # the gateway reaches the provider's keys, on 443, at the address the operator names
    assert "cidr:443" in dv.reachability(cloud, dv.one(cloud, "Deployment", "gateway"), "egress")


def test_deploy_catches_an_open_or_unconfigured_cloud_gateway(
    dv: ModuleType, rendered: dict[str, Any]
) -> None:
    objs = copy.deepcopy(rendered["cloud"])
    config = _config(dv, objs, "gateway")
    config["GATEWAY_AUTH"] = "open"
    del config["DEPLOY_ENVIRONMENT"]
    config["OIDC_ISSUER"] = "http://login.example.com/realms/platform"
    del config["OIDC_AUDIENCE"]
    errors = "\n".join(dv.exposure_errors(dv.with_out_of_band(objs, "cloud"), "cloud"))
    assert "Deployment/gateway: GATEWAY_AUTH='open', must be 'required'" in errors
    assert "Deployment/gateway: DEPLOY_ENVIRONMENT must be 'cloud'" in errors
    assert "OIDC_ISSUER must be an https:// URL" in errors
    assert "OIDC_AUDIENCE is not set" in errors


def test_deploy_catches_api_keys_not_from_a_mounted_secret(
    dv: ModuleType, kind_objs: list[dict[str, Any]]
) -> None:
    spec = dv.pod_spec(dv.one(kind_objs, "Deployment", "gateway"))
    spec["containers"][0]["volumeMounts"] = [
        m for m in spec["containers"][0]["volumeMounts"] if m["name"] != "api-keys"
    ]
    errors = dv.exposure_errors(kind_objs, "kind")
    keys_file = "/etc/gateway/auth/api-keys.json"
    assert (
        f"Deployment/gateway: AUTH_API_KEYS_FILE {keys_file}: no Secret is mounted at /etc/gateway/auth"
        in errors
    )
    _config(dv, kind_objs, "gateway")["AUTH_API_KEYS_FILE"] = ""
    assert "Deployment/gateway: AUTH_API_KEYS_FILE is not set" in dv.exposure_errors(kind_objs, "kind")


def test_deploy_cloud_ingress_routes_the_public_api_and_nothing_operational(
    dv: ModuleType, rendered: dict[str, Any]
) -> None:
    assert dv.ingress_errors(rendered["cloud"]) == []
    routed = {
        (p["path"], p["pathType"])
        for p in dv.one(rendered["cloud"], "Ingress", "gateway")["spec"]["rules"][0]["http"]["paths"]
    }
    assert ("/", "Prefix") not in routed
    for path in (
        "/api/kafka/status",
        "/api/v1/services",
        "/messages",
        "/messages/search",
        "/health",
        "/console/login",
        "/docs",
        "/openapi.json",
    ):
        assert any(dv.ingress_matches(r, t, path) for r, t in routed), path
    for path in ("/metrics", "/readyz", "/healthz", "/healthcheck", "/api-internal"):
        assert not any(dv.ingress_matches(r, t, path) for r, t in routed), path


def test_deploy_catches_an_ingress_that_routes_too_much_or_too_little(
    dv: ModuleType, rendered: dict[str, Any]
) -> None:
    objs = copy.deepcopy(rendered["cloud"])
    paths = dv.one(objs, "Ingress", "gateway")["spec"]["rules"][0]["http"]["paths"]
    backend = paths[0]["backend"]
    paths[:] = [p for p in paths if p["path"] != "/messages"]
    errors = "\n".join(dv.ingress_errors(objs))
    assert "the gateway's public path /messages/search is not routed" in errors
    paths.append({"path": "/", "pathType": "Prefix", "backend": backend})
    paths.append({"path": "/ready", "pathType": "ImplementationSpecific", "backend": backend})
    errors = "\n".join(dv.ingress_errors(objs))
    for operational in ("/healthz", "/readyz", "/metrics"):
        assert f"Prefix '/' routes {operational}, which answers in the cluster only" in errors
    assert "path '/ready' is ImplementationSpecific" in errors
    assert "ImplementationSpecific '/ready' routes /readyz" in errors


def test_deploy_catches_scraping_or_calling_the_wrong_port(
    dv: ModuleType, kind_objs: list[dict[str, Any]]
) -> None:
    # the gateway may now reach search-indexer's metrics port, and a rule with no ports opens notifier's all
    indexer = dv.one(kind_objs, "NetworkPolicy", "search-indexer")["spec"]["ingress"][0]
    indexer["ports"].append({"protocol": "TCP", "port": 9103})
    dv.one(kind_objs, "NetworkPolicy", "notifier")["spec"]["ingress"][0].pop("ports")
    errors = "\n".join(dv.network_errors(kind_objs, "kind"))
    assert (
        "Deployment/search-indexer: gateway may reach ports ['8103', '9103'], only the http port 8103"
        in errors
    )
    assert "Deployment/notifier: gateway may reach ports ['*'], only the http port 8104" in errors


def test_deploy_catches_metrics_port_drift(dv: ModuleType, kind_objs: list[dict[str, Any]]) -> None:
    dv.one(kind_objs, "Deployment", "log-sink")["spec"]["template"]["metadata"]["annotations"][
        "prometheus.io/port"
    ] = "8102"
    _config(dv, kind_objs, "notifier")["METRICS_PORT"] = "9999"
    c = _container(dv, kind_objs, "issue-ingestor")
    c["ports"] = [p for p in c["ports"] if p["name"] != "metrics"]
    errors = "\n".join(dv.policy_errors(kind_objs))
    assert (
        'Deployment/log-sink: prometheus.io/scrape must be "true" and prometheus.io/port the metrics port'
        in errors
    )
    assert "Deployment/notifier: METRICS_PORT='9999' but the metrics port is 9104" in errors
    assert "Deployment/issue-ingestor: no container port named metrics (METRICS_PORT)" in errors


def test_deploy_every_service_shares_the_internal_token_of_one_secret(
    dv: ModuleType, rendered: dict[str, Any]
) -> None:
    kind = rendered["kind"]
    tokens = {dv.container_env(kind, d)["INTERNAL_TOKEN"] for d in dv.platform_deployments(kind)}
    assert len(tokens) == 1
    assert tokens != {""}
    cloud = dv.with_out_of_band(rendered["cloud"], "cloud")
    for d in dv.platform_deployments(cloud):
        assert "INTERNAL_TOKEN" in dv.container_env(cloud, d), d["metadata"]["name"]
        if d["metadata"]["name"] != "gateway":  # the services take no admin token: only the gateway's
            assert "ADMIN_TOKEN" not in dv.container_env(cloud, d), d["metadata"]["name"]


def test_deploy_catches_a_missing_or_second_internal_token(
    dv: ModuleType, kind_objs: list[dict[str, Any]]
) -> None:
    c = _container(dv, kind_objs, "log-sink")
    c["envFrom"] = [
        s for s in c["envFrom"] if not s.get("secretRef", {}).get("name", "").startswith("platform-internal")
    ]
    other = _container(dv, kind_objs, "notifier")
    other["env"] = [{"name": "INTERNAL_TOKEN", "value": "another-token"}]
    errors = dv.exposure_errors(kind_objs, "kind")
    assert "Deployment/log-sink: INTERNAL_TOKEN must come from the Secret platform-internal only" in errors
    assert "INTERNAL_TOKEN differs between the gateway and the services" in errors


def test_deploy_catches_compose_exposing_more_than_the_gateway(
    dv: ModuleType, rendered: dict[str, Any]
) -> None:
    model = dv.compose_model()
    model["services"]["notifier"]["ports"] = [{"target": 8104, "published": "8104", "protocol": "tcp"}]
    model["services"]["gateway"]["ports"].append({"target": 9100, "published": "9100", "protocol": "tcp"})
    model["services"]["gateway"]["volumes"] = []
    errors = "\n".join(dv.compose_errors(model, rendered["kind"]))
    assert "compose notifier: publishes ['8104']; only the gateway is reachable" in errors
    assert "compose gateway: publishes its metrics port 9100" in errors
    assert (
        "compose gateway: nothing is mounted read-only at AUTH_API_KEYS_FILE /etc/gateway/auth/api-keys.json"
        in errors
    )
