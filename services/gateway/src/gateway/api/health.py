"""Operations: /healthz (alive), /readyz and the seed's /health (dependencies), /metrics."""

from __future__ import annotations

from typing import Literal

from consumer_runtime.http import METRICS_RESPONSES
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from gateway.deps import ChecksDep, SettingsDep
from gateway.ops.services import Readiness, readiness

router = APIRouter(tags=["operations"])
#: The seed's /health words for the gateway's readiness.
_SEED_STATUS = {"ready": "healthy", "degraded": "degraded"}


class GatewayLiveness(BaseModel):
    status: Literal["ok"]
    service: Literal["gateway"]


class GatewayReadiness(BaseModel):
    """200 while Kafka answers (``degraded``: a service is not ready); 503 when Kafka does not."""

    status: Literal["ready", "degraded", "not ready"]
    service: Literal["gateway"]
    checks: dict[str, str] = Field(description='"kafka" and each service → "ok" or why it is not ready')
    checked_s_ago: dict[str, float] = Field(
        description="Age of each check's result (checked in the background)"
    )
    auth: Literal["open", "required"] = Field(
        description="GATEWAY_AUTH: `open` lets calls without a token act as an anonymous user (make run only)"
    )


class SeedHealth(GatewayReadiness):
    """The seed's words for the same readiness: healthy, degraded, unhealthy (503)."""

    status: Literal["healthy", "degraded", "unhealthy"]  # type: ignore[assignment]


def _ready_answer(ready: Readiness, status: str, auth: str) -> JSONResponse:
    body = {
        "status": status,
        "service": "gateway",
        "auth": auth,  # GATEWAY_AUTH: "open" (make run) must be visible to whoever looks
        "checks": ready.checks,
        "checked_s_ago": ready.checked_s_ago,
    }
    return JSONResponse(body, status_code=200 if ready.kafka_ok else 503)


@router.get(
    "/healthz",
    summary="Liveness: the process answers",
    response_model=GatewayLiveness,
)
async def healthz() -> dict[str, str]:
    return {"status": "ok", "service": "gateway"}


@router.get(
    "/readyz",
    summary="Readiness: Kafka reachable (503 otherwise); each service's readiness reported (degraded); "
    "answered at once from background checks",
    responses={
        200: {"model": GatewayReadiness},
        503: {"model": GatewayReadiness, "description": "Kafka unreachable (status `not ready`)"},
    },
)
async def readyz(checks: ChecksDep, settings: SettingsDep) -> JSONResponse:
    ready = await readiness(checks)
    return _ready_answer(ready, ready.status, settings.gateway_auth)


@router.get(
    "/health",
    tags=["seed-compatible"],
    summary="System health check (seed 000)",
    responses={
        200: {"model": SeedHealth},
        503: {"model": SeedHealth, "description": "Kafka unreachable (status `unhealthy`)"},
    },
)
async def health(checks: ChecksDep, settings: SettingsDep) -> JSONResponse:
    ready = await readiness(checks)
    return _ready_answer(ready, _SEED_STATUS.get(ready.status, "unhealthy"), settings.gateway_auth)


@router.get(
    "/metrics",
    summary="Prometheus metrics (gateway_dependency_ready and platform_consumer_group_lag are kept fresh "
    "by background checks)",
    response_class=Response,
    responses=METRICS_RESPONSES,
)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
