"""The seed producer's events (no broker): every one lands, none is dated ahead of the receiver's clock."""

from __future__ import annotations

import importlib.util
import random
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kafka_test_producer.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kafka_test_producer", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_event_is_dated_in_the_future() -> None:
    """The services dead-letter event times more than MAX_CLOCK_SKEW (5 min) ahead: follow-ups (solved up
    to 4 h, reopened up to 2 h later) must be in the past when sent, or the documented run fills the DLQ."""
    producer = load_script()
    events = producer.build_events(20, 0.9, 0.5, random.Random(1))
    sent_at = datetime.now(UTC)
    times = [e.timestamp for e in events]
    assert len(events) > 20  # follow-ups were made
    assert max(times) <= sent_at, f"{max(times)} is after {sent_at}: the services refuse it"
    assert times == sorted(times)
    first = {}
    for event in events:
        first.setdefault(event.issue, event)
        assert event.timestamp >= first[event.issue].timestamp  # a follow-up comes after its report
        assert first[event.issue].is_solved is False
    # the newest event is the moment of the run, the others before it (``now`` pins it)
    now = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)
    assert max(e.timestamp for e in producer.build_events(20, 0.9, 0.5, random.Random(1), now=now)) == now
    # ids name the day of their report
    assert all(e.issue.split("_")[2] == first[e.issue].timestamp.strftime("%Y%m%d") for e in events)


def test_dry_run_into_head_ends_quietly() -> None:
    """``--dry-run | head`` (the script's own example) must not end in a BrokenPipeError traceback."""
    done = subprocess.run(
        f"{sys.executable} {SCRIPT} --dry-run --count 200 | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.count("\n") == 1
    assert "Traceback" not in done.stderr, done.stderr
