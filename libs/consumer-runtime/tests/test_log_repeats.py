"""aiokafka's repeated connection errors while a broker is down: one line per window, with the count."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from consumer_runtime.logging import RepeatFilter, configure_logging


def _record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_repeats_within_the_window_are_dropped_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("consumer_runtime.logging.time.monotonic", lambda: clock[0])
    f = RepeatFilter(prefixes=("aiokafka",), window_s=10)
    template = "Unable connect to node with id %s: %s"
    assert f.filter(_record("aiokafka.client", template, 1, "refused"))
    for i in range(5):
        clock[0] += 0.1
        assert not f.filter(_record("aiokafka.client", template, 1, f"refused {i}"))
    assert f.filter(_record("aiokafka.client", "another message %s", 1))  # other template: own budget
    assert f.filter(_record("app", template, 1, "x"))  # other loggers are never filtered
    assert f.filter(_record("app", template, 1, "x"))
    clock[0] += 10
    passed = _record("aiokafka.client", template, 1, "refused")
    assert f.filter(passed)
    assert passed.repeated == 5  # type: ignore[attr-defined]


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root_logging")
def test_configured_output_keeps_the_first_and_reports_the_count(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [500.0]
    monkeypatch.setattr("consumer_runtime.logging.time.monotonic", lambda: clock[0])
    configure_logging("test-svc", "INFO")
    log = logging.getLogger("aiokafka.client")
    for _ in range(50):
        log.error("Unable connect to node with id %s", 7)
    clock[0] += 60
    log.error("Unable connect to node with id %s", 7)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    mine = [line for line in lines if line.get("logger") == "aiokafka.client"]
    assert len(mine) == 2
    assert mine[0]["event"] == "Unable connect to node with id 7"
    assert mine[0]["service"] == "test-svc"
    assert "repeated" not in mine[0]
    assert mine[1]["repeated"] == 49
