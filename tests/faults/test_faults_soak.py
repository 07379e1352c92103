"""The chaos soak (benchmarks/soak.py, `make soak`) for 60 s: load on every topic, two replicas per sink, a
random fault every 10 s; afterwards nothing missing, nothing duplicated, every poison record dead-lettered,
every replica ready within 10 s of the last fault. In `make test-faults` only (``-m faults``); ``SOAK_S``
changes the duration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.faults]


@pytest.mark.timeout(1500)
async def test_soak_every_event_stored_once_under_random_faults(heavy: bool, tmp_path: Path) -> None:
    if not heavy:
        pytest.skip("the soak runs in make test-faults (-m faults) and make soak only")
    from benchmarks.soak import markdown, soak

    result = await soak(float(os.environ.get("SOAK_S", "60")), out=tmp_path)
    print(markdown(result))
    assert result["ok"], markdown(result)
