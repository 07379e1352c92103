"""Fixtures of the issue-ingestor tests: a MySQL database of this test session's own, a migrated store."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from devservers import drop_mysql_database, ensure_mysql_database

sys.path.insert(0, str(Path(__file__).parent))

from ingestor_testlib import ISSUE_DB_PASSWORD, MysqlDb, wipe
from issue_ingestor.sink import IssueSink
from issue_ingestor.store import IssueStore


@pytest.fixture(scope="session")
def issue_db(mysql_server: tuple[str, int]) -> Iterator[MysqlDb]:
    """A database + user created for this test session only, dropped afterwards."""
    host, port = mysql_server
    suffix = uuid.uuid4().hex[:10]
    db = MysqlDb(host, port, f"ii_test_{suffix}", f"ii_{suffix}")
    ensure_mysql_database(db.name, db.user, ISSUE_DB_PASSWORD, port=port)
    yield db
    drop_mysql_database(db.name, db.user, port=db.port)


@pytest.fixture
async def store(issue_db: MysqlDb) -> AsyncIterator[IssueStore]:
    """A migrated store over empty tables."""
    s = IssueStore(issue_db.settings())
    await s.open()
    await wipe(s)
    yield s
    await s.close()


@pytest.fixture
def sink(store: IssueStore) -> IssueSink:
    """The consumer's sink over the migrated ``store``."""
    return IssueSink(store)
