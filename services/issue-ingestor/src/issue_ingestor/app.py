"""Composition root: settings → store (MySQL) + consumer runner (Kafka) → FastAPI app."""

from __future__ import annotations

from asyncmy.errors import MySQLError
from consumer_runtime import ConsumerRunner, get_logger, ops_router
from consumer_runtime.service import consumer_lifespan
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from platform_events import CHATBOT_ISSUES

from issue_ingestor.api import issues_router, seed_router
from issue_ingestor.config import SERVICE_NAME, Settings
from issue_ingestor.store import IssueStore

log = get_logger(__name__)


def build_runner(settings: Settings, store: IssueStore) -> ConsumerRunner:
    return ConsumerRunner(
        name=SERVICE_NAME,
        settings=settings,
        topics=[CHATBOT_ISSUES.renamed(settings.kafka_topic_chatbot_issues)],
        sink=store,
        group_id=settings.kafka_consumer_group,
    )


def create_app(settings: Settings, *, store: IssueStore | None = None) -> FastAPI:
    store = store or IssueStore(settings)
    runner = build_runner(settings, store)

    async def open_store() -> None:
        try:
            await store.open()
        except Exception as exc:  # stay up and not ready; writes and /readyz retry the migration
            log.warning("mysql unavailable at start; will retry", error=repr(exc), db_host=settings.db_host)

    app = FastAPI(
        title="issue-ingestor",
        description="Factory issue events (chatbot-issue-events) → MySQL ChatbotIssue + chatbot sessions",
        version="0.1.0",
        lifespan=consumer_lifespan(
            runner, settings.shutdown_timeout_s, startup=open_store, shutdown=store.close
        ),
    )
    app.state.settings = settings
    app.state.store = store
    app.state.runner = runner
    app.include_router(ops_router(service=SERVICE_NAME, runner=runner, checks={"mysql": store.ping}))
    app.include_router(issues_router())
    app.include_router(seed_router())

    @app.get("/health", tags=["operations"], summary="Seed-compatible liveness (same as /healthz)")
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": SERVICE_NAME}

    @app.exception_handler(MySQLError)
    @app.exception_handler(OSError)
    @app.exception_handler(TimeoutError)
    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("request failed: database unavailable", path=request.url.path, error=repr(exc))
        return JSONResponse({"detail": f"database unavailable: {exc!r}"}, status_code=503)

    return app
