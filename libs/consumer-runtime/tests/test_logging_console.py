"""LOG_JSON=false (what `make run` sets on a terminal): readable console lines; otherwise one JSON object per
line. Each case runs in its own interpreter (configure_logging sets process-wide state)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROGRAM = """
import logging, sys
from consumer_runtime.logging import configure_logging, get_logger
configure_logging("svc", "INFO", json=sys.argv[1] == "json")
get_logger("t").info("batch stored", records=3, topic="log-events")
logging.getLogger("uvicorn.error").warning("server said %s", "hi")
try:
    raise ValueError("boom")
except ValueError:
    get_logger("t").exception("failed")
"""


def _run(mode: str, **env: str) -> list[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.splitlines()


def test_json_lines_by_default() -> None:
    lines = _run("json")
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(records) == 3
    assert records[0]["event"] == "batch stored"
    assert records[0]["records"] == 3
    assert records[0]["service"] == "svc"
    assert records[1]["logger"] == "uvicorn.error"
    assert "ValueError: boom" in records[2]["exception"]


def test_console_lines_for_people() -> None:
    lines = _run("console", NO_COLOR="1")
    first = lines[0]
    assert not first.startswith("{")
    assert "[info" in first
    assert "batch stored" in first
    assert "records=3" in first
    assert "topic=log-events" in first
    assert "service=svc" in first
    assert any("server said hi" in line and "[warning" in line for line in lines)
    assert any(line.startswith("ValueError: boom") for line in lines)  # a plain traceback
    assert "\x1b[" not in "\n".join(lines)  # NO_COLOR: no escape sequences


@pytest.mark.parametrize("env", [{}])
def test_console_lines_are_coloured_unless_no_color(env: dict[str, str]) -> None:
    # stdout is a pipe here, as under honcho: colour must not depend on it
    assert "\x1b[" in "\n".join(_run("console", **env))
