"""The console's pages and forms. Each handler calls the same operation ``/api/v1`` uses (:mod:`gateway.ops`:
service control, topic/group/DLQ administration) or forwards the query to the owning service, and renders
the answer as HTML; htmx swaps fragments.

Forms are plain ``application/x-www-form-urlencoded`` posts (parsed here; the gateway has no multipart
dependency). Errors keep their HTTP status and render as an alert (htmx is configured to swap them).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from aiokafka.errors import KafkaError
from consumer_runtime.tracing import record_context
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from platform_events import ModeType, ProcessType
from pydantic import ValidationError
from starlette.datastructures import State

from gateway.abuse import REFUSED
from gateway.api.params import GroupId, TopicName
from gateway.api.query_models import MAX_ID, MAX_ISSUE_OFFSET, MAX_SEARCH_TEXT, MAX_STREAM_CURSOR
from gateway.console.auth import (
    COOKIE,
    ForeignOrigin,
    LoginRequired,
    admin_enabled,
    base_path,
    cookie_path,
    login_limit,
    require_session,
    same_origin,
    sessions,
    token_valid,
)
from gateway.errors import ApiError, from_ops, kafka_error
from gateway.logs import log
from gateway.ops import browse as messages_ops
from gateway.ops import dlq as dlq_ops
from gateway.ops import groups as groups_ops
from gateway.ops import services as services_ops
from gateway.ops import topics as topics_ops
from gateway.ops.browse import ProduceIn
from gateway.ops.dlq import ReplayIn
from gateway.ops.errors import OpsError
from gateway.ops.groups import OffsetReset
from gateway.upstream import Upstreams

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
ISSUES, SEARCH, NOTIFIER, LOGS = "issue-ingestor", "search-indexer", "notifier", "log-sink"
TraceId = Annotated[str, Query(pattern=r"^([0-9a-f]{32})?$")]

UserId = Annotated[str, PathParam(min_length=1, max_length=MAX_ID)]

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}

NAV = [
    ("overview", "Overview", "/"),
    ("topics", "Topics", "/topics"),
    ("groups", "Consumer groups", "/groups"),
    ("dlq", "Dead letters", "/dlq"),
    ("issues", "Factory issues", "/issues"),
    ("search", "Message search", "/search"),
    ("notifications", "Notifications", "/notifications"),
]


# ================================================================================ template helpers
def _ms(value: Any) -> str:
    """Epoch ms (or s when small) → ``YYYY-MM-DD HH:MM:SS UTC``."""
    if value is None or value == "":
        return "—"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    seconds = number / 1000 if number > 10_000_000_000 else number
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)


def _highlight(fragment: str) -> Markup:
    """A search highlight (``<em>`` around hits) as safe HTML: everything escaped, then the hits marked."""
    escaped = str(escape(fragment))
    return Markup(escaped.replace("&lt;em&gt;", "<mark>").replace("&lt;/em&gt;", "</mark>"))


def trace_id_of(headers: Any) -> str | None:
    """The W3C trace id (32 hex digits) a record's ``traceparent`` header carries, None without a valid one.
    ``headers``: the browse API's ``{name: text}`` of a record."""
    if not isinstance(headers, dict) or not isinstance(headers.get("traceparent"), str):
        return None
    pairs = [(k, v.encode("utf-8")) for k, v in headers.items() if isinstance(v, str)]
    context = record_context(pairs)
    return format(context.trace_id, "032x") if context is not None else None


templates.env.filters["ms"] = _ms
templates.env.filters["trace_id"] = trace_id_of
templates.env.filters["pretty"] = _pretty
templates.env.filters["highlight"] = _highlight
templates.env.filters["urlseg"] = lambda v: quote(str(v), safe="")


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("active", "")
    context.update(base=base_path(request), nav=NAV, htmx=is_htmx(request))
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response


def error(
    request: Request, status: int, message: str, *, code: str = "error", field: str | None = None
) -> Response:
    """An alert fragment for htmx requests, a full page otherwise; the HTTP status is kept."""
    name = "error.html" if is_htmx(request) else "error_page.html"
    return render(request, name, status, status_code=status, code=code, message=message, field=field)


def gw(request: Request) -> State:
    """The gateway's state: kafka, upstreams, control, settings, topics (built in its lifespan)."""
    state: State = request.app.state.gateway.state
    return state


async def form(request: Request) -> dict[str, list[str]]:
    """The urlencoded body of a form post."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("application/x-www-form-urlencoded", ""):
        raise ApiError(415, "unsupported_media_type", "the console accepts urlencoded forms only")
    body = (await request.body()).decode("utf-8", "replace")
    return parse_qs(body, keep_blank_values=True)


def first(data: dict[str, list[str]], name: str, default: str = "") -> str:
    values = data.get(name)
    return values[0].strip() if values else default


def optional_int(value: str, name: str) -> int | None:
    if value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ApiError(
            422, "validation_error", f"{name}: {value!r} is not a whole number", field=name
        ) from None


# ============================================================================================ services
def _service_rows(request: Request, statuses: list[services_ops.ServiceStatus]) -> list[dict[str, Any]]:
    """Rows of the overview, with rates from the previous sample (kept ≥ 2 s apart per service)."""
    samples: dict[str, tuple[float, int, int]] = request.app.state.samples
    now = time.monotonic()
    rows = []
    for s in statuses:
        st = s.status or {}
        counts = st.get("counts") or {}
        consumed, stored = int(counts.get("consumed", 0)), int(counts.get("stored", 0))
        rate_in = rate_out = None
        previous = samples.get(s.service)
        if previous is not None and now - previous[0] > 0.5 and consumed >= previous[1]:
            dt = now - previous[0]
            rate_in, rate_out = (consumed - previous[1]) / dt, (stored - previous[2]) / dt
        if previous is None or now - previous[0] >= 2.0 or consumed < previous[1]:
            samples[s.service] = (now, consumed, stored)
        assignment = st.get("assignment") or []
        rows.append(
            {
                "name": s.service,
                "url": s.url,
                "reachable": s.reachable,
                "error": s.error,
                "state": st.get("state", "unreachable") if s.reachable else "unreachable",
                "group": st.get("group"),
                "topics": st.get("topics") or [],
                "partitions": len(assignment),
                "assignment": assignment,
                "lag": s.lag,  # from the broker: the same figure as the API and the gauge, in any state
                "lag_note": (s.group_lag.note or s.group_lag.error) if s.group_lag else None,
                "counts": counts,
                "buffered": st.get("buffered"),
                "last_batch": st.get("last_batch"),
                "last_error": st.get("last_error"),
                "paused": bool(st.get("paused")),
                "desired": (s.desired or {}).get("action"),
                "rate_in": rate_in,
                "rate_out": rate_out,
            }
        )
    return rows


async def _overview_context(request: Request) -> dict[str, Any]:
    state = gw(request)
    listed = await services_ops.list_services(state.upstreams, state.control, state.lags)
    ready = await services_ops.readiness(state.checks)
    return {"rows": _service_rows(request, listed.services), "ready": ready}


# ============================================================================================ routes
public = APIRouter()
router = APIRouter(dependencies=[Depends(require_session)])


@public.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: Annotated[str, Query(max_length=2000)] = "") -> Response:
    return render(request, "login.html", enabled=admin_enabled(request), next=_safe_next(request, next))


def _safe_next(request: Request, target: str) -> str:
    """Only redirect back inside the console (never to another site)."""
    base = base_path(request)
    if target.startswith(base + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return base + "/"


async def _over_login_rate(request: Request, client: str) -> Response | None:
    """The 429 page when ``client`` is over its login attempts (counting this one), else ``None``."""
    wait = await login_limit(request).retry_after(client)
    if wait is None:
        return None
    REFUSED.labels("console_login").inc()
    log.warning("console login rate-limited", client=client, retry_after_s=wait)
    refused = render(request, "login.html", 429, enabled=True, next="", limited=wait)
    refused.headers["retry-after"] = str(wait)
    return refused


def _new_session(request: Request, target: str) -> Response:
    """Redirect to ``target`` with the cookie of a new session (its signed id, never the token)."""
    table = sessions(request)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        table.create(),
        max_age=table.ttl_s,
        path=cookie_path(request),
        httponly=True,
        secure=request.url.scheme == "https",  # over TLS (directly or as a trusted proxy says)
        samesite="strict",
    )
    return response


@public.post("/login")
async def login(request: Request) -> Response:
    if not admin_enabled(request):
        return render(request, "login.html", 403, enabled=False, next="")
    if not same_origin(request):
        return error(request, 403, "login must be posted from the console's own page", code="foreign_origin")
    client = request.client.host if request.client else ""
    refused = await _over_login_rate(request, client)
    if refused is not None:
        return refused
    data = await form(request)
    target = _safe_next(request, first(data, "next"))
    if not token_valid(request, first(data, "token")):
        log.warning("console login refused", client=client)
        return render(request, "login.html", 401, enabled=True, next=target, failed=True)
    log.info("console login", client=client)
    return _new_session(request, target)


@router.post("/logout")
async def logout(request: Request) -> Response:
    sessions(request).revoke(request.cookies.get(COOKIE))  # the old cookie is refused from now on
    login = base_path(request) + "/login"
    response: Response = (
        Response(status_code=204, headers={"HX-Redirect": login})
        if is_htmx(request)
        else RedirectResponse(login, status_code=303)
    )
    response.delete_cookie(
        COOKIE,
        path=cookie_path(request),
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="strict",
    )
    return response


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request) -> Response:
    return render(request, "overview.html", active="overview", **await _overview_context(request))


@router.get("/partials/services", response_class=HTMLResponse)
async def services_partial(request: Request) -> Response:
    return render(request, "_services.html", **await _overview_context(request))


@router.post("/services/{service}/{action}", response_class=HTMLResponse)
async def control(request: Request, service: str, action: str) -> Response:
    state = gw(request)
    result = await services_ops.control(state.upstreams, state.control, service, action)
    log.info("console control", service=service, action=action, applied=result.applied)
    flash = (
        f"{action} → {service}: applied, now {(result.status or {}).get('state')}"
        if result.applied
        else f"{action} → {service}: recorded in the control topic, service not reachable ({result.error})"
    )
    flash = f"{flash} · {datetime.now(UTC):%H:%M:%S} UTC"
    return render(
        request,
        "_services.html",
        flash=flash,
        flash_kind="ok" if result.applied else "info",
        **await _overview_context(request),
    )


# ------------------------------------------------------------------------------------------ topics
@router.get("/topics", response_class=HTMLResponse)
async def topics_page(request: Request, internal: bool = False) -> Response:
    state = gw(request)
    listed = await topics_ops.list_topics(state.kafka, state.topics, include_internal=internal)
    return render(request, "topics.html", active="topics", topics=listed.topics, internal=internal)


@router.get("/topics/{topic}", response_class=HTMLResponse)
async def topic_page(request: Request, topic: TopicName) -> Response:
    state = gw(request)
    detail = await topics_ops.describe(state.kafka, state.topics, topic)
    total = sum(p.messages or 0 for p in detail.partitions)
    return render(request, "topic.html", active="topics", topic=detail, total=total)


@router.get("/topics/{topic}/messages", response_class=HTMLResponse)
async def topic_messages(
    request: Request,
    topic: TopicName,
    partition: Annotated[str, Query(max_length=10)] = "",
    offset: Annotated[str, Query(max_length=20)] = "",
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
    from_end: Annotated[str, Query(max_length=10)] = "",
) -> Response:
    state = gw(request)
    start = optional_int(offset, "offset")
    page = await messages_ops.browse(
        state.kafka,
        state.settings,
        topic,
        partition=optional_int(partition, "partition"),
        offset=start,
        limit=limit,
        from_end=bool(from_end) and start is None,
    )
    messages = sorted(page.messages, key=lambda m: (m.timestamp_ms, m.partition, m.offset), reverse=True)
    return render(request, "_messages.html", page=page, messages=messages)


@router.post("/topics/{topic}/produce", response_class=HTMLResponse)
async def topic_produce(request: Request, topic: TopicName) -> Response:
    state = gw(request)
    data = await form(request)
    raw = first(data, "value")
    try:
        value: Any = json.loads(raw) if raw else None
    except ValueError as exc:
        return error(request, 422, f"value is not valid JSON: {exc}", code="invalid_json", field="value")
    body = ProduceIn.model_validate(
        {
            "key": first(data, "key") or None,
            "value": value,
            "partition": optional_int(first(data, "partition"), "partition"),
            "validate": first(data, "validate") == "on",
        }
    )
    sent = await messages_ops.produce(state.kafka, state.topics, topic, body)
    log.info("console produce", topic=topic, partition=sent.partition, offset=sent.offset)
    return render(request, "_produced.html", sent=sent)


# ------------------------------------------------------------------------------------------ groups
@router.get("/groups", response_class=HTMLResponse)
async def groups_page(request: Request) -> Response:
    listed = await groups_ops.list_groups(gw(request).kafka)
    groups = sorted(listed.groups, key=lambda g: g.group_id)
    return render(request, "groups.html", active="groups", groups=groups)


@router.get("/groups/{group_id}", response_class=HTMLResponse)
async def group_page(request: Request, group_id: GroupId) -> Response:
    detail = await groups_ops.describe(gw(request).kafka, group_id, gw(request).lags.known())
    topics = sorted({o.topic for o in detail.offsets})
    by_topic = {t: [o for o in detail.offsets if o.topic == t] for t in topics}
    return render(request, "group.html", active="groups", group=detail, by_topic=by_topic, topics=topics)


@router.post("/groups/{group_id}/reset", response_class=HTMLResponse)
async def group_reset(request: Request, group_id: GroupId) -> Response:
    data = await form(request)
    parts = [p.strip() for p in first(data, "partitions").split(",") if p.strip()]
    when = first(data, "timestamp")
    timestamp_ms = None
    if when:
        try:
            parsed = datetime.fromisoformat(when)
        except ValueError:
            return error(request, 422, f"timestamp: {when!r} is not a date-time", field="timestamp")
        timestamp_ms = int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp() * 1000)
    body = OffsetReset.model_validate(
        {
            "topic": first(data, "topic"),
            "to": first(data, "to"),
            "timestamp_ms": timestamp_ms,
            "offset": optional_int(first(data, "offset"), "offset"),
            "partitions": [optional_int(p, "partitions") for p in parts] or None,
            "evict_stale": first(data, "evict_stale") == "on",
            "dry_run": first(data, "dry_run") == "1",
        }
    )
    result = await groups_ops.reset(gw(request).kafka, group_id, body)
    return render(request, "_reset.html", result=result)


# ------------------------------------------------------------------------------------------ DLQ
@router.get("/dlq", response_class=HTMLResponse)
async def dlq_page(request: Request) -> Response:
    listed = await dlq_ops.list_dlq(gw(request).kafka)
    return render(request, "dlq.html", active="dlq", dlqs=listed.dlq_topics)


@router.get("/dlq/{topic}", response_class=HTMLResponse)
async def dead_letters_page(
    request: Request, topic: TopicName, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> Response:
    state = gw(request)
    page = await dlq_ops.dead_letters(state.kafka, state.settings, topic, limit=limit)
    letters = sorted(page.dead_letters, key=lambda d: (d.timestamp_ms, d.partition, d.offset), reverse=True)
    return render(request, "dead_letters.html", active="dlq", page=page, letters=letters)


@router.post("/dlq/{topic}/replay", response_class=HTMLResponse)
async def dlq_replay(request: Request, topic: TopicName) -> Response:
    state = gw(request)
    data = await form(request)
    refs = []
    for ref in data.get("ref", []):
        partition, _, offset = ref.partition(":")
        refs.append({"partition": optional_int(partition, "ref"), "offset": optional_int(offset, "ref")})
    body = ReplayIn.model_validate({"all": first(data, "all") == "1", "messages": refs or None})
    result = await dlq_ops.replay(state.kafka, state.settings, topic, body)
    log.info("console dlq replay", dlq=result.dlq_topic, replayed=result.replayed)
    return render(request, "_replayed.html", result=result)


# ------------------------------------------------------------------------------------------ issues
@router.get("/issues", response_class=HTMLResponse)
async def issues_page(
    request: Request,
    process_type: Annotated[str, Query(alias="processType", max_length=32)] = "",
    mode_type: Annotated[str, Query(alias="modeType", max_length=32)] = "",
    is_solved: Annotated[str, Query(alias="isSolved", max_length=5)] = "",
    offset: Annotated[int, Query(ge=0, le=MAX_ISSUE_OFFSET)] = 0,
) -> Response:
    params: dict[str, Any] = {"limit": 50, "offset": offset}
    for name, value in (("processType", process_type), ("modeType", mode_type), ("isSolved", is_solved)):
        if value:
            params[name] = value
    page = await gw(request).upstreams.json(ISSUES, "GET", "/issues", params=params)
    return render(
        request,
        "issues.html",
        active="issues",
        page=page,
        filters=params,
        process_types=[p.value for p in ProcessType],
        mode_types=[m.value for m in ModeType],
    )


@router.get("/issues/{issue_id}", response_class=HTMLResponse)
async def issue_page(
    request: Request, issue_id: Annotated[str, PathParam(min_length=1, max_length=191)]
) -> Response:
    upstreams = gw(request).upstreams
    seg = quote(issue_id, safe="")
    issue = await upstreams.json(ISSUES, "GET", f"/issues/{seg}")
    sessions = await upstreams.json(ISSUES, "GET", f"/issues/{seg}/sessions")
    trace = await _issue_trace(gw(request), issue)
    return render(request, "issue.html", active="issues", issue=issue, sessions=sessions, trace=trace)


async def _issue_trace(state: State, issue: Any) -> dict[str, Any]:
    """The trace of the event that last wrote the issue: the issue names that event's Kafka position
    (``kafka_partition``, ``kafka_offset`` of the issue topic), and the record there carries the W3C
    ``traceparent`` header its producer set. ``trace_id`` is None when the record carries none or is no
    longer in the topic (``why`` says which)."""
    topic = state.settings.kafka_topic_chatbot_issues
    partition, offset = issue.get("kafka_partition"), issue.get("kafka_offset")
    found: dict[str, Any] = {"topic": topic, "partition": partition, "offset": offset, "trace_id": None}
    if not isinstance(partition, int) or not isinstance(offset, int):
        return {**found, "why": "the issue names no Kafka position"}
    try:
        page = await messages_ops.browse(
            state.kafka, state.settings, topic, partition=partition, offset=offset, limit=1
        )
    except (OpsError, KafkaError) as exc:
        return {**found, "why": f"its record could not be read ({type(exc).__name__})"}
    record = next((m for m in page.messages if m.partition == partition and m.offset == offset), None)
    if record is None:  # browse starts at the earliest offset still kept
        return {**found, "why": "its record is no longer in the topic (retention)"}
    trace_id = trace_id_of(record.headers)
    if trace_id is None:
        return {**found, "why": "its record carries no traceparent header"}
    return {**found, "trace_id": trace_id}


# ------------------------------------------------------------------------------------------ logs
@router.get("/logs", response_class=HTMLResponse)
async def logs_page(request: Request, trace_id: TraceId = "") -> Response:
    """The wide log events of one trace (every service's, newest first), from the log-sink."""
    page = None
    if trace_id:
        page = await gw(request).upstreams.json(
            LOGS, "GET", "/logs", params={"trace_id": trace_id, "limit": 200}
        )
    return render(request, "logs.html", active="", trace_id=trace_id, page=page)


# ------------------------------------------------------------------------------------------ search
async def _search(request: Request, q: str, channel_id: str, author_id: str, sort: str) -> Any:
    params: dict[str, Any] = {"q": q, "limit": 50, "highlight": "true"}
    if channel_id:
        params["channel_id"] = channel_id
    if author_id:
        params["author_id"] = author_id
    if sort:
        params["sort"] = sort
    return await gw(request).upstreams.json(SEARCH, "GET", "/messages/search", params=params)


SearchText = Annotated[str, Query(max_length=MAX_SEARCH_TEXT)]
SearchId = Annotated[str, Query(max_length=MAX_ID)]
SortOrder = Annotated[str, Query(pattern=r"^(|relevance|newest|oldest)$")]


@router.get("/search", response_class=HTMLResponse)
async def search_page(
    request: Request,
    q: SearchText = "",
    channel_id: SearchId = "",
    author_id: SearchId = "",
    sort: SortOrder = "",
) -> Response:
    results = await _search(request, q, channel_id, author_id, sort) if q else None
    form_values = {"q": q, "channel_id": channel_id, "author_id": author_id, "sort": sort}
    return render(request, "search.html", active="search", results=results, form=form_values)


@router.get("/search/results", response_class=HTMLResponse)
async def search_results(
    request: Request,
    q: SearchText = "",
    channel_id: SearchId = "",
    author_id: SearchId = "",
    sort: SortOrder = "",
) -> Response:
    results = await _search(request, q, channel_id, author_id, sort)
    return render(request, "_search_results.html", results=results, q=q)


# ------------------------------------------------------------------------------------------ notifications
@router.get("/notifications", response_class=HTMLResponse)
async def notifications_page(
    request: Request, user: Annotated[str, Query(max_length=MAX_ID)] = ""
) -> Response:
    page = None
    if user:
        page = await gw(request).upstreams.json(
            NOTIFIER, "GET", f"/notifications/{quote(user, safe='')}", params={"limit": 50}
        )
    return render(request, "notifications.html", active="notifications", user=user, page=page)


@router.post("/notifications/{user_id}/read", response_class=HTMLResponse)
async def notifications_read(request: Request, user_id: UserId) -> Response:
    upstreams = gw(request).upstreams
    seg = quote(user_id, safe="")
    await upstreams.json(NOTIFIER, "POST", f"/notifications/{seg}/read", json={"all": True})
    page = await upstreams.json(NOTIFIER, "GET", f"/notifications/{seg}", params={"limit": 50})
    return render(request, "_notifications.html", user=user_id, page=page)


@router.get("/notifications/{user_id}/stream")
async def notifications_stream(request: Request, user_id: UserId) -> StreamingResponse:
    """The notifier's live SSE stream, proxied (resumes with the browser's Last-Event-ID)."""
    last = request.headers.get("last-event-id")
    # an opaque cursor: passed whole or not at all (a cut one could name an earlier position)
    headers = {"last-event-id": last} if last and len(last) <= MAX_STREAM_CURSOR else None
    upstreams: Upstreams = gw(request).upstreams
    return await upstreams.stream(
        NOTIFIER, f"/notifications/{quote(user_id, safe='')}/stream", None, request, headers
    )


# ============================================================================================ the sub-app
def create_console(gateway: FastAPI) -> FastAPI:
    console = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, title="Platform console")
    console.state.gateway = gateway
    console.state.samples = {}
    console.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    console.include_router(public)
    console.include_router(router)

    @console.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        login = base_path(request) + "/login"
        if is_htmx(request):
            return Response(status_code=401, headers={"HX-Redirect": login})
        if request.method in ("GET", "HEAD") and "/stream" not in request.url.path:
            target = request.url.path
            if request.url.query:
                target += "?" + request.url.query
            return RedirectResponse(f"{login}?next={quote(target, safe='')}", status_code=303)
        return error(request, 401, "log in with the admin token first", code="unauthorized")

    @console.exception_handler(ForeignOrigin)
    async def _foreign(request: Request, exc: ForeignOrigin) -> Response:
        return error(request, 403, "request did not come from the console's own pages", code="foreign_origin")

    @console.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> Response:
        where = f" ({exc.body.service})" if exc.body.service else ""
        return error(request, exc.status, exc.body.message + where, code=exc.body.error, field=exc.body.field)

    @console.exception_handler(OpsError)
    async def _refused(request: Request, exc: OpsError) -> Response:
        return await _api(request, from_ops(exc))

    @console.exception_handler(ValidationError)
    async def _invalid_model(request: Request, exc: ValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()[:5]
        )
        return error(request, 422, problems, code="validation_error")

    @console.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in exc.errors()[:5]
        )
        return error(request, 422, problems, code="validation_error")

    @console.exception_handler(KafkaError)
    async def _kafka(request: Request, exc: KafkaError) -> Response:
        answer = kafka_error(exc, request.url.path)
        return error(request, answer.status, answer.body.message, code=answer.body.error)

    @console.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        request_id = uuid.uuid4().hex[:12]
        log.exception("console error", path=request.url.path, request_id=request_id)
        return error(
            request, 500, f"internal error (request id {request_id}; see logs)", code="internal_error"
        )

    return console
