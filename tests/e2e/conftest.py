"""The e2e stack: all five services as separate processes on free ports, names of this session's own.

Started once per session (the first e2e test pays ~10-20 s), stopped by PID and its data dropped at the end.
Tests drive only the gateway's HTTP API and the Kafka topics.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_harness import SERVICES, Names, Stack, shared_endpoints


@pytest.fixture(scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    ep = shared_endpoints()
    names = Names.fresh("e2e")
    s = Stack(names, ep, tmp_path_factory.mktemp(f"stack-{names.rid}"))
    try:
        await s.start(*[n for n in SERVICES if n != "gateway"])
        await s.start("gateway")
        yield s
    finally:
        await s.close()


@pytest.fixture
async def gw(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the gateway as an app (its API key: the data-plane scopes; admin calls and other
    users' notifications send ``stack.admin_headers()``)."""
    async with httpx.AsyncClient(
        base_url=stack.url("gateway"), timeout=30.0, headers=stack.app_headers()
    ) as client:
        yield client
