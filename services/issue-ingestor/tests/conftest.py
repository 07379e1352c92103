"""Fixtures of the issue-ingestor tests: a MySQL database of this test session's own, a migrated store."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncmy
import pytest
from devservers import ensure_mysql_database

sys.path.insert(0, str(Path(__file__).parent))

from ingestor_testlib import ISSUE_DB_PASSWORD, MysqlDb, wipe
from issue_ingestor.store import IssueStore


async def _root(db: MysqlDb) -> Any:
    return await asyncmy.connect(host=db.host, port=db.port, user="root", password="", autocommit=True)


@pytest.fixture(scope="session")
def issue_db(mysql_server: tuple[str, int]) -> Iterator[MysqlDb]:
    """A database + user created for this test session only, dropped afterwards."""
    host, port = mysql_server
    suffix = uuid.uuid4().hex[:10]
    db = MysqlDb(host, port, f"ii_test_{suffix}", f"ii_{suffix}")
    ensure_mysql_database(db.name, db.user, ISSUE_DB_PASSWORD, port=port)
    yield db

    async def drop() -> None:
        conn = await _root(db)
        try:
            async with conn.cursor() as cur:
                await cur.execute(f"DROP DATABASE IF EXISTS `{db.name}`")
                for host_part in ("%", "localhost"):
                    await cur.execute(f"DROP USER IF EXISTS '{db.user}'@'{host_part}'")
        finally:
            conn.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # safe whether or not a loop runs here
        pool.submit(asyncio.run, drop()).result()


@pytest.fixture
async def store(issue_db: MysqlDb) -> AsyncIterator[IssueStore]:
    """A migrated store over empty tables."""
    s = IssueStore(issue_db.settings())
    await s.open()
    await wipe(s)
    yield s
    await s.close()
