"""`make kind-up` end to end with recording stubs for docker, kind, go and kubectl (no container engine here):
the commands, their order and the manifests it applies (rendered by the real kubectl)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "k8s" / "kind-up.sh"
SERVICES = ("issue-ingestor", "log-sink", "search-indexer", "notifier", "gateway")

STUB = """#!/usr/bin/env bash
printf '%s\\n' "$(basename "$0") $*" >> "$RECORD"
name=$(basename "$0")
if [[ $name == go && $1 == install ]]; then
  cp "$STUBS/kind.stub" "$GOBIN/kind"
fi
if [[ $name == kubectl && $1 == get && $2 == deployment ]]; then
  [[ $5 == gateway ]] && printf '%s' "${RUNNING_GATEWAY:-}"
fi
if [[ $name == kubectl && $1 == apply && $2 == -k ]]; then
  "$REAL_KUBECTL" kustomize "$3" | grep -E '^ +image: ' | sed 's/^ */rendered /' >> "$RECORD"
fi
exit 0
"""


def _kind_up(tmp_path: Path, *, running_gateway: str = "", kind_on_path: bool = False) -> list[str]:
    stubs, tools = tmp_path / "stubs", tmp_path / "tools"
    stubs.mkdir()
    tools.mkdir()
    (stubs / "kind.stub").write_text(STUB)
    (stubs / "kind.stub").chmod(0o755)
    for name in ("docker", "go", "kubectl") + (("kind",) if kind_on_path else ()):
        (stubs / name).write_text(STUB)
        (stubs / name).chmod(0o755)
    record = tmp_path / "record"
    env = {
        "PATH": f"{stubs}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "RECORD": str(record),
        "STUBS": str(stubs),
        "KIND_UP_BIN": str(tools),
        "KUBECTL": str(stubs / "kubectl"),
        "REAL_KUBECTL": str(Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "kubectl"),
        "IMAGE_TAG": "dev-42",
        "RUNNING_GATEWAY": running_gateway,
    }
    if not Path(env["REAL_KUBECTL"]).is_file():
        env["REAL_KUBECTL"] = str(ROOT / ".venv" / "bin" / "kubectl")
    done = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert not list((SCRIPT.parent).glob(".kind-up.*")), "the throw-away kustomization was left behind"
    return record.read_text().splitlines()


def _index(lines: list[str], pattern: str) -> int:
    found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
    assert found, f"no command matches {pattern!r} in:\n" + "\n".join(lines)
    return found[0]


def test_kind_up_from_a_fresh_clone_runs_every_step_in_order(tmp_path: Path) -> None:
    lines = _kind_up(tmp_path)
    steps = [
        r"^go install sigs\.k8s\.io/kind@v\d+\.\d+\.\d+$",  # kind is not on PATH: built pinned
        r"^kind get clusters$",
        r"^kind create cluster --name kafka-platform --config .*/deploy/k8s/kind-cluster\.yaml$",
        r"^kubectl config use-context kind-kafka-platform$",
        r"^kubectl apply -k .*/deploy/k8s/addons/metrics-server$",
        r"^docker build --build-arg SERVICE=issue-ingestor -t kafka-platform/issue-ingestor:dev-42 ",
        r"^kind load docker-image --name kafka-platform kafka-platform/gateway:dev-42$",
        r"^kubectl delete job -n platform kafka-topics --ignore-not-found$",
        r"^kubectl apply -k .*/deploy/k8s/\.kind-up\.",
        r"^kubectl rollout status -n kube-system deployment/metrics-server",
        r"^kubectl rollout status -n platform statefulset/kafka",
        r"^kubectl wait -n platform --for=condition=complete job/kafka-topics",
        r"^kubectl rollout status -n platform deployment/gateway",
    ]
    positions = [_index(lines, step) for step in steps]
    assert positions == sorted(positions), "\n".join(lines)
    # the applied manifests carry IMAGE_TAG for every service (rendered by the real kubectl)
    rendered = {line.split(" ", 1)[1] for line in lines if line.startswith("rendered image: kafka-platform/")}
    assert rendered == {f"image: kafka-platform/{s}:dev-42" for s in SERVICES}
    # nothing was running under this tag: no restart
    assert not [line for line in lines if "rollout restart" in line]
    for service in SERVICES:
        assert (
            f"docker build --build-arg SERVICE={service} -t kafka-platform/{service}:dev-42 {ROOT}" in lines
        )


def test_kind_up_restarts_a_deployment_rebuilt_under_the_same_tag(tmp_path: Path) -> None:
    lines = _kind_up(tmp_path, running_gateway="kafka-platform/gateway:dev-42", kind_on_path=True)
    assert not [line for line in lines if line.startswith("go ")], "kind on PATH is used as it is"
    restarts = [line for line in lines if "rollout restart" in line]
    assert restarts == ["kubectl rollout restart -n platform deployment/gateway"]
    assert _index(lines, r"^kubectl apply -k .*\.kind-up\.") < _index(lines, "rollout restart")


def test_kind_up_pins_the_node_image_and_binds_localhost_only() -> None:
    cluster = yaml.safe_load((ROOT / "deploy" / "k8s" / "kind-cluster.yaml").read_text())
    for node in cluster["nodes"]:
        assert re.fullmatch(r"kindest/node:v[\d.]+@sha256:[0-9a-f]{64}", node["image"])
        for mapping in node.get("extraPortMappings", []):
            assert mapping["listenAddress"] == "127.0.0.1"


def test_make_kind_up_installs_the_tools_first() -> None:
    rule = re.search(r"^kind-up:([^#\n]*)", (ROOT / "Makefile").read_text(), re.M)
    assert rule
    assert "install" in rule.group(1).split()


@pytest.mark.parametrize("path", ["deploy/k8s/addons/metrics-server"])
def test_kind_addons_render_and_validate(path: str) -> None:
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("deploy_validate", ROOT / "deploy" / "validate.py")
    assert spec
    assert spec.loader
    dv = sys.modules.get("deploy_validate") or importlib.util.module_from_spec(spec)
    if "deploy_validate" not in sys.modules:
        sys.modules["deploy_validate"] = dv
        spec.loader.exec_module(dv)
    objs = dv.render_path(ROOT / path)
    assert dv.schema_errors(objs) == []
    assert {o["kind"] for o in objs} >= {"Deployment", "APIService"}
