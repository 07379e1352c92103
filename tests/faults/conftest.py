"""Fault-injection fixtures: a stack of this test's own (processes we start and signal by PID), event
generators and exactly-once checks per sink, reading each sink's datastore directly.

Event counts: ``FAULT_EVENTS`` if set; else 100 000 when the run selects ``-m faults`` (``make test-faults``);
else a modest default so ``make test`` stays within its budget.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_harness import Endpoints, Names, Stack, shared_endpoints

DEFAULT_EVENTS = 2000
HEAVY_EVENTS = 100_000


@pytest.fixture
def fault_events(request: pytest.FixtureRequest) -> int:
    raw = os.environ.get("FAULT_EVENTS", "").strip()
    if raw:
        return int(raw)
    markexpr = (request.config.option.markexpr or "").strip()
    return HEAVY_EVENTS if markexpr == "faults" else DEFAULT_EVENTS


@pytest.fixture
def heavy(request: pytest.FixtureRequest) -> bool:
    """True in ``make test-faults`` (``-m faults``): the slow variants run only there."""
    return (request.config.option.markexpr or "").strip() == "faults"


@pytest.fixture
async def make_stack(tmp_path: Path) -> AsyncIterator[Callable[..., Stack]]:
    """``make_stack(endpoints=None, **env)`` → a Stack with names of its own; all closed (and data dropped)
    at the end of the test."""
    stacks: list[Stack] = []

    def make(
        endpoints: Endpoints | None = None, service_env: dict[str, dict[str, str]] | None = None, **env: str
    ) -> Stack:
        ep = endpoints or shared_endpoints()
        names = Names.fresh("flt")
        s = Stack(names, ep, tmp_path / names.rid, env=env, service_env=service_env)
        stacks.append(s)
        return s

    try:
        yield make
    finally:
        for s in stacks:
            await s.close()
