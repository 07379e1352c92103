"""The issue ingestor: factory issue events (chatbot-issue-events) → MySQL, and the issue API."""

from __future__ import annotations

from asyncmy.errors import MySQLError
from consumer_runtime import get_logger
from consumer_runtime.service import Datastore, build_service
from fastapi import FastAPI
from platform_events import TOPIC_CHATBOT_ISSUES

from issue_ingestor.api import health_router, issues_router, seed_router
from issue_ingestor.config import SERVICE_NAME, Settings
from issue_ingestor.sink import IssueSink
from issue_ingestor.store import IssueStore

log = get_logger(__name__)


def create_app(
    settings: Settings, *, store: IssueStore | None = None, sink: IssueSink | None = None
) -> FastAPI:
    """``sink`` (tests) brings its own store; else the sink is built over ``store`` (or a new one)."""
    if sink is not None:
        store = sink.store
    store = store or IssueStore(settings)
    sink = sink or IssueSink(store)

    async def open_store() -> None:
        try:
            await store.open()
        except Exception as exc:  # stay up and not ready; writes and /readyz retry the migration
            log.warning("mysql unavailable at start; will retry", error=repr(exc), db_host=settings.db_host)

    return build_service(
        name=SERVICE_NAME,
        description="Factory issue events (chatbot-issue-events) → MySQL ChatbotIssue + chatbot sessions",
        settings=settings,
        topics=[TOPIC_CHATBOT_ISSUES],
        sink=sink,
        datastore=Datastore("mysql", store.ping, down=(MySQLError,)),
        routers=[health_router(), issues_router(), seed_router()],
        startup=open_store,
        shutdown=store.close,
        state={"store": store},
    )
