"""The gateway app: ``create_app(settings)`` wires Kafka, the upstream clients and every router."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from consumer_runtime.docs import install_docs
from consumer_runtime.kafka_clients import retry_until_done
from consumer_runtime.tracing import configure_tracing, instrument_app
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from platform_events import TOPIC_LOG_EVENTS, dlq_topic_for
from wide_logging import WideEventMiddleware, WideLogger, WideLoggingConfig

from gateway import console
from gateway.abuse import RateLimit, limit_publishing
from gateway.api import dlq, groups, health, publish, queries, topics
from gateway.api import services as services_api
from gateway.config import GatewaySettings
from gateway.control import ControlPlane
from gateway.errors import ErrorBody, install_error_handlers
from gateway.identity import Authenticator
from gateway.kafka import KafkaGateway
from gateway.logs import log
from gateway.middleware import BodyLimit, RequestLog, SafePathIds, TrustedProxies
from gateway.monitor import Checks
from gateway.ops import services
from gateway.ops.dlq import REPLAY_MARKER_CONFIG
from gateway.ops.lag import GroupLags
from gateway.policy import CONSOLE, OPTIONAL, POLICY, PUBLIC, Authorize, Need
from gateway.upstream import Upstreams

DESCRIPTION = """
The one public REST API of the platform. Apps publish events here; operators administer Kafka here;
queries are forwarded to the service that owns the data.

* **Seed-compatible paths** (tag `seed-compatible`) stay exactly as the seed documents use them.
* **Every call but the probes and documents needs a bearer token** (`Authorization: Bearer <token>`): a JWT
  of the organisation's OIDC provider, an API key, or the `ADMIN_TOKEN`. Each operation names the scope it
  needs (`issues:read`, `issues:write`, `messages:read`, `messages:write`, `notifications:self`, `logs:read`,
  `admin`); no token or a bad one is a 401, a token without the scope (or another user's notifications) a
  403. Under `GATEWAY_AUTH=open` (`make run` only) a call without a token acts as an anonymous user with the
  data-plane scopes (never `admin`); `/health` then says `"auth": "open"`. See docs/security.md.
* Every error is JSON: `{"error": code, "message": text, "field": failing field}`; an unreachable service
  is a 503 naming it.
"""

TAGS = [
    {"name": "seed-compatible", "description": "Paths of the seed documents, kept byte-for-byte"},
    {"name": "publish", "description": "Publish platform events (validated with platform_events)"},
    {"name": "queries", "description": "Read data, forwarded to the owning service"},
    {"name": "services", "description": "Consumer status and control of every service"},
    {"name": "topics", "description": "Kafka topics"},
    {"name": "consumer groups", "description": "Groups, per-partition lag, offset reset"},
    {"name": "messages", "description": "Browse a topic, produce a test message"},
    {"name": "dlq", "description": "Dead letters: inspect and replay"},
    {"name": "operations", "description": "Health, readiness, metrics"},
]


async def _ensure_topics(kafka: KafkaGateway, control: ControlPlane, settings: GatewaySettings) -> None:
    """Create the platform topics (+ DLQs) and the control topic when missing; retry while Kafka is down."""
    names = [spec.name for spec in settings.topics().values()]
    dlqs = [dlq_topic_for(n) for n in names]
    dlq_config = {"retention.ms": str(settings.dlq_retention_ms)}

    async def create() -> None:
        for name in names:
            await kafka.ensure_topic(name, settings.kafka_topic_partitions)
        for name in dlqs:
            await kafka.ensure_topic(name, settings.kafka_topic_partitions, dlq_config)
        await control.ensure_topic()
        await kafka.ensure_topic(settings.kafka_dlq_replay_topic, 1, REPLAY_MARKER_CONFIG)

    await retry_until_done(create, what="creating topics failed")


def wide_logger(settings: GatewaySettings) -> WideLogger:
    """Request wide events go to the platform's log topic (MongoDB fallback), like any other app's."""
    config = WideLoggingConfig.from_env(
        service="gateway",
        kafka_bootstrap_servers=settings.kafka_bootstrap_servers,
        log_topic=settings.topic(TOPIC_LOG_EVENTS).name,
        enable_idempotence=settings.kafka_enable_idempotence,
    )
    return WideLogger(config)


#: descriptions of parameters declared without one, by (name, "dlq" on dead-letter paths else "")
PARAMETERS: dict[tuple[str, str], str] = {
    ("message_id", ""): "Id of the chat message (as returned when it was created)",
    ("service", ""): "Service name: issue-ingestor, log-sink, search-indexer or notifier",
    ("limit", ""): "Most items in the answer",
    ("offset", ""): "Items to skip (paging)",
    ("offset", "dlq"): "First Kafka offset to read (with `partition`)",
    ("partition", "dlq"): "Only this partition of the dead-letter topic",
    ("processType", ""): "Only issues of this process type",
    ("modeType", ""): "Only issues of this mode type",
    ("isSolved", ""): "Only solved (true) or open (false) issues",
    ("issue_id", ""): "Id of the factory issue",
    ("channel_id", ""): "Only messages of this channel",
    ("author_id", ""): "Only messages by this author",
    ("sort", ""): "Order of the hits",
    ("highlight", ""): "Mark the matched words in the hits",
    ("level", ""): "Only log events of this level",
    ("event_id", ""): "Id of the log event",
    ("user_id", ""): "The user whose notifications these are",
    ("status", ""): "Only notifications in this state",
    ("notification_id", ""): "Id of the notification",
    ("last-event-id", ""): "Resume the stream after this event id (sent by EventSource on reconnect)",
    ("topic", ""): "Kafka topic name",
    ("topic", "dlq"): "Dead-letter topic name (`<topic>.dlq`)",
    ("group_id", ""): "Consumer group id",
}


def limited_operations(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of the operations an abuse limit can refuse with 429: publishing, live streams."""
    out = {(m, r.path) for r in publish.router.routes if isinstance(r, APIRoute) for m in r.methods or ()}
    return out | {("GET", path) for method, path, handler, _ in queries.ROUTES if handler is queries.stream}


#: operations the gateway answers from its own process, never with a 503 error body (liveness, metrics)
ANSWERED_BY_THE_GATEWAY_ALONE = frozenset({"/healthz", "/metrics"})


def error_documented_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """OpenAPI with the real error shape everywhere: FastAPI's default 422 schema is replaced by
    ``ErrorBody``; protected operations document their scope and 401/403 (from the policy table), bodies
    400/413/422, every operation 503."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault(
            "ErrorBody", ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        ref = {"$ref": "#/components/schemas/ErrorBody"}
        error = {
            "description": "Error (JSON naming the failing field)",
            "content": {"application/json": {"schema": ref}},
        }
        schema["components"]["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "A JWT of the OIDC provider, an API key (AUTH_API_KEYS_FILE) or the "
                "ADMIN_TOKEN; each operation's requirement names the scope it needs",
            }
        }
        for path, methods in schema.get("paths", {}).items():
            for method, operation in methods.items():
                responses = operation.setdefault("responses", {})
                for code, response in list(responses.items()):
                    content = response.get("content", {}).get("application/json", {})
                    if "HTTPValidationError" in str(content.get("schema", {}).get("$ref", "")):
                        responses[code] = {
                            **error,
                            "description": "Invalid input (the failing field is named)",
                        }
                _document_access(operation, responses, POLICY.get((method.upper(), path)), error)
                for parameter in operation.get("parameters", []):
                    if not parameter.get("description"):
                        described = PARAMETERS.get(
                            (parameter["name"], "dlq" if "/dlq/" in path else ""),
                            PARAMETERS.get((parameter["name"], "")),
                        )
                        if described:
                            parameter["description"] = described
                if (method.upper(), path) in limited_operations(app):
                    responses.setdefault(
                        "429",
                        {
                            **error,
                            "description": "Over an abuse limit (publish rate, open streams): "
                            "retry after the Retry-After header's seconds",
                            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        },
                    )
                if "requestBody" in operation:
                    responses.setdefault("400", {**error, "description": "Body not decodable (not UTF-8)"})
                    responses.setdefault("413", {**error, "description": "Request body too large"})
                    responses.setdefault("422", {**error, "description": "Invalid input"})
                if path not in ANSWERED_BY_THE_GATEWAY_ALONE:
                    responses.setdefault(
                        "503", {**error, "description": "Kafka or the owning service unavailable"}
                    )
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    return openapi


def _document_access(
    operation: dict[str, Any], responses: dict[str, Any], decision: Any, error: dict[str, Any]
) -> None:
    """The operation's security requirement and its 401/403, from its :data:`gateway.policy.POLICY` entry."""
    operation.pop("security", None)
    if decision in (PUBLIC, CONSOLE, OPTIONAL) or decision is None:
        return
    assert isinstance(decision, Need)
    operation["security"] = [{"bearer": [decision.scope]}]
    needs = f"Needs the scope `{decision.scope}`"
    if decision.owner:
        needs += f" and `{decision.owner}` to be the token's subject (unless the token has `admin`)"
    operation["description"] = (operation.get("description", "") + f"\n\n{needs}.").strip()
    responses["401"] = {**error, "description": "No bearer token, or one that is not valid"}
    other = " or is another user's" if decision.owner else ""
    responses["403"] = {**error, "description": f"The token lacks the scope {decision.scope}{other}"}


def _close_streams_on_sigterm(upstreams: Upstreams) -> Callable[[], None]:
    """Chain a SIGTERM handler in front of the server's: live streams end at once, so the server's graceful
    shutdown does not wait its whole timeout on endless SSE responses and the lifespan's flush (wide-logging,
    Kafka producer) keeps its share of the grace period. Returns the function that restores the handler."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signal handlers live in the main thread only (tests may run the app elsewhere)
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        loop.call_soon_threadsafe(upstreams.close_streams)
        if callable(previous):
            previous(signum, frame)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    signal.signal(signal.SIGTERM, on_sigterm)
    return restore


def create_app(settings: GatewaySettings) -> FastAPI:
    authenticator = Authenticator(settings)  # a bad AUTH_API_KEYS_FILE stops the start here, naming it
    wide = wide_logger(settings) if settings.wide_logging_enabled else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        kafka = KafkaGateway(settings)
        upstreams = Upstreams(settings)
        control = ControlPlane(kafka, settings.kafka_control_topic)
        app.state.kafka = kafka
        app.state.upstreams = upstreams
        app.state.control = control
        checks = Checks(
            services.readiness_checks(kafka, upstreams, settings.readiness_check_timeout_s),
            interval_s=settings.readiness_interval_s,
            timeout_s=settings.readiness_check_timeout_s,
            on_result=services.record_ready,
        )
        app.state.checks = checks
        lags = GroupLags(kafka, app.state.topics)
        app.state.lags = lags
        await kafka.start()
        checks.start()
        if settings.kafka_enabled:
            lags.start(settings.group_lag_interval_s)
        if wide is not None:
            await wide.start()
        task = None
        if settings.kafka_enabled and settings.kafka_auto_create_topics:
            task = asyncio.create_task(_ensure_topics(kafka, control, settings), name="gateway:topics")
        log.info(
            "gateway started",
            services=upstreams.urls,
            bootstrap=settings.kafka_bootstrap_servers,
            admin_enabled=settings.admin_token is not None,
            auth=settings.gateway_auth,
            oidc=settings.oidc_issuer,
            api_keys=len(authenticator.api_keys),
        )
        if authenticator.open:
            log.warning(
                "GATEWAY_AUTH=open: calls without a token act as an anonymous user with the data-plane "
                "scopes; never use this outside a developer's machine"
            )
        if settings.internal_token is None or not settings.internal_token.get_secret_value():
            log.warning(
                "INTERNAL_TOKEN is not set: the services refuse the gateway's consumer control, deletes and "
                "other writes (set the same INTERNAL_TOKEN on the gateway and the services)"
            )
        restore = _close_streams_on_sigterm(upstreams)
        try:
            yield
        finally:
            restore()
            await checks.close()
            await lags.close()
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await upstreams.close()
            await authenticator.close()
            await kafka.close()
            if wide is not None:
                await wide.close()

    app = FastAPI(
        title="Platform gateway",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        docs_url=None,  # served by install_docs from the package's own Swagger UI files (no CDN)
        redoc_url=None,  # ReDoc would load from a CDN; /docs is the one docs UI
    )
    app.openapi = error_documented_openapi(app)  # type: ignore[method-assign]
    install_docs(app)
    app.state.settings = settings
    app.state.topics = settings.topics()
    install_error_handlers(app)
    # ---- abuse limits (docs/security.md, "Console sessions and abuse limits"): one publish rate per caller
    app.state.publish_limit = RateLimit("publish", settings.publish_rate_limit)
    for module in (health, publish, services_api, queries, topics, groups, dlq):
        limited = [Depends(limit_publishing)] if module is publish else None
        app.include_router(module.router, dependencies=limited)
    console.install(app)  # /console (operator web UI) and /asyncapi.json
    app.add_middleware(SafePathIds, router=app.router)  # innermost: right before routing
    app.state.auth = authenticator
    # before the path-id check (an unauthenticated caller learns nothing of ids); CORS answers preflights
    # before it; the request log and wide events see its 401/403
    app.add_middleware(Authorize, authenticator=authenticator)
    origins = settings.cors_origins()
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["*"],
            allow_headers=["*"],
            allow_credentials="*" not in origins,
        )
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestLog, log_lines=wide is None)
    if wide is not None:
        app.add_middleware(WideEventMiddleware, logger=wide)
    # outside the request log and wide events, so they record the real client behind the Ingress
    app.add_middleware(TrustedProxies, networks=settings.trusted_networks())
    configure_tracing("gateway")  # already done by run_service; off unless OTEL_* asks for it
    instrument_app(app)  # the outermost layer: wide events see the request's span
    return app
