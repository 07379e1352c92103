"""Every error the gateway returns is JSON: ``{"error": code, "message": text, "field": path|null, ...}``.

Upstream services that cannot be reached become 503 naming the service; Kafka unreachable becomes 503
naming Kafka; anything unexpected becomes a 500 with a request id and no stack trace (the log has it).
Operations (:mod:`gateway.ops`) refuse in domain terms (:mod:`gateway.ops.errors`); their HTTP status is
decided here, once (``STATUS_OF``), for the API and the console alike.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, NodeNotReadyError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.logs import log
from gateway.ops.errors import Conflict, Invalid, NotFound, OpsError, Unavailable


class ErrorBody(BaseModel):
    """The shape of every error response."""

    error: str = Field(description="Machine-readable error code", examples=["validation_error"])
    message: str = Field(
        description="What went wrong, for a human", examples=["processType: input should be …"]
    )
    field: str | None = Field(None, description="The failing field (dotted path) when one is at fault")
    details: list[dict[str, Any]] | None = None
    service: str | None = Field(None, description="Upstream service at fault (503)")
    request_id: str | None = Field(
        None,
        description="Correlation id of the gateway's log line that holds the cause (an internal failure's "
        "details are logged, never answered)",
    )


class ApiError(Exception):
    """Raise anywhere in a handler to answer ``status`` with an :class:`ErrorBody`."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        *,
        field: str | None = None,
        details: Sequence[dict[str, Any]] | None = None,
        service: str | None = None,
        headers: dict[str, str] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = ErrorBody(
            error=error,
            message=message,
            field=field,
            details=list(details) if details is not None else None,
            service=service,
            request_id=request_id,
        )
        self.headers = headers


def log_cause(event: str, cause: str, **fields: Any) -> str:
    """Log an internal failure's details (exception text, addresses, an upstream's error message) under a
    new correlation id, and return the id: the client is answered a generic message naming it."""
    request_id = uuid.uuid4().hex[:12]
    log.warning(event, request_id=request_id, cause=cause, **fields)
    return request_id


def hidden(status: int, error: str, message: str, cause: str, *, service: str | None = None) -> ApiError:
    """``message`` (generic) for the client with a correlation id; ``cause`` goes to the log only."""
    request_id = log_cause(f"{error}: cause hidden from the client", cause, service=service, status=status)
    return ApiError(
        status,
        error,
        f"{message} (request id {request_id}; see the gateway's logs)",
        service=service,
        request_id=request_id,
    )


#: The HTTP status of each kind of refused operation (the one place it is decided).
STATUS_OF: dict[type[OpsError], int] = {NotFound: 404, Conflict: 409, Invalid: 422, Unavailable: 503}


def from_ops(exc: OpsError) -> ApiError:
    """The HTTP answer to a refused operation."""
    status = next((code for kind, code in STATUS_OF.items() if isinstance(exc, kind)), 500)
    return ApiError(status, exc.code, exc.message, field=exc.field, details=exc.details, service=exc.service)


class UpstreamUnavailable(ApiError):
    """503 naming the service and the kind of failure (``reason``: timed out, cannot connect, shutting
    down); the failure's details (``cause``: address, exception text) are logged under a request id."""

    def __init__(self, service: str, reason: str, cause: str | None = None) -> None:
        message = f"service {service} is unavailable: {reason}"
        request_id = None
        if cause is not None:
            request_id = log_cause("upstream unavailable", cause, service=service, reason=reason)
            message += f" (request id {request_id}; see the gateway's logs)"
        super().__init__(503, "upstream_unavailable", message, service=service, request_id=request_id)


def error_response(status: int, body: ErrorBody, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def _field(loc: Sequence[int | str]) -> str:
    parts = list(loc)
    located = bool(parts) and parts[0] in ("body", "query", "path", "header", "cookie")
    where = str(parts.pop(0)) if located else ""
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or where


def _validation(exc: RequestValidationError) -> JSONResponse:
    details = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            loc = list(err.get("loc", ()))
            where = f" at position {loc[1]}" if len(loc) > 1 else ""
            message = f"request body is not valid JSON ({ctx.get('error', 'decode error')}){where}"
            return error_response(422, ErrorBody(error="invalid_json", message=message, field="body"))
        msg = str(err.get("msg", "invalid"))
        for prefix in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(prefix)
        details.append(
            {
                "field": _field(err.get("loc", ())),
                "location": str((err.get("loc") or ["?"])[0]),
                "message": msg,
            }
        )
    first = details[0] if details else {"field": None, "message": "invalid request"}
    message = "; ".join(f"{d['field']}: {d['message']}" if d["field"] else d["message"] for d in details[:5])
    body = ErrorBody(error="validation_error", message=message, field=first["field"] or None, details=details)
    return error_response(422, body)


def kafka_error(exc: KafkaError, path: str) -> ApiError:
    """A Kafka client error as an answer: 503 (unreachable) or 502; the broker's text (addresses, internals)
    is logged under the request id only."""
    unavailable = isinstance(exc, KafkaConnectionError | KafkaTimeoutError | NodeNotReadyError)
    return hidden(
        503 if unavailable else 502,
        "kafka_unavailable" if unavailable else "kafka_error",
        f"Kafka {'is unavailable' if unavailable else 'refused the request'}",
        f"{type(exc).__name__}: {exc} (path {path})",
        service="kafka",
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.body, exc.headers)

    @app.exception_handler(OpsError)
    async def _refused(request: Request, exc: OpsError) -> JSONResponse:
        answer = from_ops(exc)
        return error_response(answer.status, answer.body)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        try:
            code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        except ValueError:
            code = "error"
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        if exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, ErrorBody(error=code, message=message), headers)

    @app.exception_handler(KafkaError)
    async def _kafka(request: Request, exc: KafkaError) -> JSONResponse:
        answer = kafka_error(exc, request.url.path)
        return error_response(answer.status, answer.body)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = uuid.uuid4().hex[:12]
        log.exception("unhandled error", path=request.url.path, request_id=request_id)
        body = ErrorBody(
            error="internal_error",
            message=f"internal error (request id {request_id}; see logs)",
            request_id=request_id,
        )
        return error_response(500, body)


#: OpenAPI ``responses=`` entries for the errors most routes can answer.
def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    texts = {
        400: "Bad request",
        401: "Missing or wrong bearer token",
        403: "The token lacks the scope the operation needs",
        404: "Not found",
        409: "Conflict",
        413: "Request body too large",
        422: "Invalid input (the failing field is named)",
        502: "Upstream answered with an error",
        503: "Kafka or an upstream service is unavailable (named in the body)",
    }
    return {code: {"model": ErrorBody, "description": texts.get(code, "Error")} for code in codes}
