"""`make run`'s environment: the local servers, or with EXTERNAL_KAFKA an external broker instead of the local
one (which is then not started). `devservers up` is recorded by a stub; `devservers env` is the real one (it
contacts no server)."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "run-env.sh"


def _run_env(
    tmp_path: Path, external: str | None, *, on_terminal: bool = False
) -> tuple[list[str], dict[str, str]]:
    record = tmp_path / "record"
    stub = tmp_path / "python"
    stub.write_text(
        "#!/usr/bin/env bash\n"
        'if [[ $3 == up ]]; then printf "%s\\n" "$*" >> "$RECORD"; exit 0; fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    stub.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEV_", "EXTERNAL_KAFKA"))}
    env.update(VPY=str(stub), RECORD=str(record))
    if external is not None:
        env["EXTERNAL_KAFKA"] = external
    out = tmp_path / "services.env"
    leader, follower = pty.openpty()  # stdout on a pseudo-terminal: as when a person types `make run`
    try:
        done = subprocess.run(
            ["bash", str(SCRIPT), str(out)],
            cwd=ROOT,
            env=env,
            stdout=follower if on_terminal else subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 0, done.stderr
    lines = [line.split("=", 1) for line in out.read_text().splitlines() if line]
    return record.read_text().splitlines(), {k: v for k, v in lines}


def test_make_run_uses_the_local_broker_by_default(tmp_path: Path) -> None:
    started, env = _run_env(tmp_path, None)
    assert started == ["-m devservers up kafka mysql mongo elasticsearch"]
    assert env["KAFKA_BOOTSTRAP_SERVERS"].startswith("127.0.0.1:")
    assert env["KAFKA_ENABLE_IDEMPOTENCE"] == "false"  # the local broker lacks idempotent producers
    assert {"DB_HOST", "MONGO_URL", "ELASTICSEARCH_URL"} <= env.keys()
    assert "LOG_JSON" not in env  # piped: the services keep JSON logs


def test_make_run_gives_every_process_one_internal_token_kept_across_runs(tmp_path: Path) -> None:
    _, first = _run_env(tmp_path, None)
    token = first["INTERNAL_TOKEN"]
    assert len(token) >= 24
    assert (tmp_path / "internal-token").stat().st_mode & 0o077 == 0  # readable by its owner only
    _, again = _run_env(tmp_path, None)
    assert again["INTERNAL_TOKEN"] == token  # the gateway and services of the next run agree with this one


def test_make_run_serves_metrics_on_ports_of_their_own() -> None:
    procfile = (ROOT / "Procfile").read_text()
    ports = dict(re.findall(r"^([a-z-]+): HTTP_PORT=\d+ METRICS_PORT=(\d+) ", procfile, re.M))
    assert ports == {
        "gateway": "9100",
        "issue-ingestor": "9101",
        "log-sink": "9102",
        "search-indexer": "9103",
        "notifier": "9104",
    }


def test_make_run_on_a_terminal_asks_for_readable_logs(tmp_path: Path) -> None:
    _, env = _run_env(tmp_path, None, on_terminal=True)
    assert env["LOG_JSON"] == "false"


@pytest.mark.parametrize("external", ["localhost:9092", "kafka-1.internal:9094,kafka-2.internal:9094"])
def test_make_run_switches_to_an_external_broker_with_one_variable(tmp_path: Path, external: str) -> None:
    started, env = _run_env(tmp_path, external)
    assert started == ["-m devservers up mysql mongo elasticsearch"], "the local broker must not start"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == external
    assert env["KAFKA_BROKER"] == external
    assert "KAFKA_ENABLE_IDEMPOTENCE" not in env  # a real broker: the services' default (on)
    assert {"DB_HOST", "MONGO_URL", "ELASTICSEARCH_URL"} <= env.keys()


def test_make_run_writes_its_environment_through_the_script() -> None:
    makefile = (ROOT / "Makefile").read_text()
    run = makefile.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "scripts/run-env.sh .devdata/services.env" in run
    assert "-e .devdata/services.env" in run


def test_make_run_runs_the_gateway_open_with_printed_tokens(tmp_path: Path) -> None:
    """`make run`: GATEWAY_AUTH=open, an admin token and a user's API key (hashed in the keys file), both
    printed ready to use, the same on the next run; the gateway accepts them as those identities."""
    import asyncio

    from gateway.config import GatewaySettings
    from gateway.identity import DATA_PLANE_SCOPES, Authenticator, key_hash

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "dev_auth.py"), str(tmp_path)],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip

    first = run()
    env = dict(line.split("=", 1) for line in first.stdout.splitlines())
    assert env["GATEWAY_AUTH"] == "open"
    user = (tmp_path / "user-token").read_text().strip()
    admin = (tmp_path / "admin-token").read_text().strip()
    assert env["ADMIN_TOKEN"] == admin
    assert user in first.stderr
    assert admin in first.stderr
    keys = Path(env["AUTH_API_KEYS_FILE"]).read_text()
    assert user not in keys, "the keys file holds hashes only"
    assert key_hash(user) in keys
    assert run().stderr == first.stderr, "the tokens stay the same from one run to the next"

    settings = GatewaySettings(
        gateway_auth=env["GATEWAY_AUTH"], admin_token=admin, auth_api_keys_file=env["AUTH_API_KEYS_FILE"]
    )
    auth = Authenticator(settings)
    as_user = asyncio.run(auth.identify(f"Bearer {user}", None))
    as_admin = asyncio.run(auth.identify(f"Bearer {admin}", None))
    assert as_user is not None
    assert as_admin is not None
    assert (as_user.subject, as_user.scopes) == ("user_001", DATA_PLANE_SCOPES)
    assert as_admin.is_admin


def test_make_run_environment_carries_the_credentials(tmp_path: Path) -> None:
    _, env = _run_env(tmp_path, None)
    assert env["GATEWAY_AUTH"] == "open"
    assert env["ADMIN_TOKEN"] == (tmp_path / "admin-token").read_text().strip()
    assert env["AUTH_API_KEYS_FILE"] == str(tmp_path / "api-keys.json")
    assert "DEPLOY_ENVIRONMENT" not in env
