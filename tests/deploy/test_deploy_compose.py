"""deploy/compose/compose.yaml: valid for the compose binary, healthchecks everywhere, and the services get
exactly the environment the kind pods get (same env files)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"


@pytest.fixture(scope="module")
def model(dv: ModuleType) -> dict[str, Any]:
    return dv.compose_model()


def test_deploy_compose_config_is_valid(dv: ModuleType) -> None:
    done = dv.compose_run("config", "-q")
    assert done.returncode == 0, done.stderr


def test_deploy_compose_has_no_problems(
    dv: ModuleType, rendered: dict[str, Any], model: dict[str, Any]
) -> None:
    assert dv.compose_errors(model, rendered["kind"]) == []
    assert set(model["services"]) == {
        "kafka",
        "kafka-init",
        "mysql",
        "mongo",
        "elasticsearch",
        "issue-ingestor",
        "log-sink",
        "search-indexer",
        "notifier",
        "gateway",
    }


def test_deploy_compose_mysql_matches_the_ingestor_settings(model: dict[str, Any]) -> None:
    mysql, ingestor = (
        model["services"]["mysql"]["environment"],
        model["services"]["issue-ingestor"]["environment"],
    )
    assert mysql["MYSQL_DATABASE"] == ingestor["DB_NAME"]
    assert mysql["MYSQL_USER"] == ingestor["DB_USERNAME"]
    assert mysql["MYSQL_PASSWORD"] == ingestor["DB_PASSWORD"]
    assert ingestor["DB_HOST"] == "mysql:3306"


def test_deploy_compose_catches_problems(
    dv: ModuleType, rendered: dict[str, Any], model: dict[str, Any]
) -> None:
    broken = copy.deepcopy(model)
    del broken["services"]["log-sink"]["healthcheck"]
    broken["services"]["notifier"]["environment"]["KAFKA_CONSUMER_GROUP"] = "notifications"
    broken["services"]["gateway"]["depends_on"]["notifier"]["condition"] = "service_started"
    errors = "\n".join(dv.compose_errors(broken, rendered["kind"]))
    assert "compose log-sink: no healthcheck" in errors
    assert "compose notifier: KAFKA_CONSUMER_GROUP='notifications'" in errors
    assert "depends_on notifier without condition service_healthy" in errors


def test_deploy_compose_binary_rejects_a_broken_file(dv: ModuleType, tmp_path: Path) -> None:
    """The exit code of the compose binary is what the suite relies on: prove it is non-zero on errors."""
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    broken = tmp_path / "deploy" / "compose" / "compose.yaml"
    data = yaml.safe_load(broken.read_text())
    data["services"]["gateway"]["depends_on"]["no-such-service"] = {"condition": "service_healthy"}
    broken.write_text(yaml.safe_dump(data))
    assert dv.compose_run("config", "-q", file=broken).returncode != 0


def test_deploy_compose_publishes_kafka_and_elasticsearch_on_localhost_only(dv: ModuleType) -> None:
    services = dv.compose_model()["services"]
    for name in ("kafka", "elasticsearch"):
        ports = services[name]["ports"]
        assert ports
        assert {p.get("host_ip") for p in ports} == {"127.0.0.1"}, name


def test_deploy_dockerfile_base_image_is_pinned_by_digest() -> None:
    import re

    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M)
    assert base
    assert re.fullmatch(r"python:[\w.-]+@sha256:[0-9a-f]{64}", base.group(1))
