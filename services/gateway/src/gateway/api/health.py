"""Operations: /healthz (alive), /readyz and the seed's /health (dependencies), /metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.deps import KafkaDep, UpstreamsDep
from gateway.logs import log
from gateway.ops.services import Readiness, readiness

router = APIRouter(tags=["operations"])
#: The seed's /health words for the gateway's readiness.
_SEED_STATUS = {"ready": "healthy", "degraded": "degraded"}


def _ready_answer(ready: Readiness, status: str) -> JSONResponse:
    body = {"status": status, "service": "gateway", "checks": ready.checks}
    return JSONResponse(body, status_code=200 if ready.kafka_ok else 503)


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok", "service": "gateway"}


@router.get(
    "/readyz",
    summary="Readiness: Kafka reachable (503 otherwise); each service's readiness reported (degraded)",
)
async def readyz(kafka: KafkaDep, upstreams: UpstreamsDep) -> JSONResponse:
    ready = await readiness(kafka, upstreams)
    return _ready_answer(ready, ready.status)


@router.get("/health", tags=["seed-compatible"], summary="System health check (seed 000)")
async def health(kafka: KafkaDep, upstreams: UpstreamsDep) -> JSONResponse:
    ready = await readiness(kafka, upstreams)
    return _ready_answer(ready, _SEED_STATUS.get(ready.status, "unhealthy"))


@router.get(
    "/metrics",
    summary="Prometheus metrics (a scrape also refreshes gateway_dependency_ready)",
    response_class=Response,
)
async def metrics(kafka: KafkaDep, upstreams: UpstreamsDep) -> Response:
    try:  # each check is bounded (3 s); the scrape answers even if they do not finish
        await asyncio.wait_for(readiness(kafka, upstreams), 5.0)
    except Exception as exc:
        log.warning("readiness for metrics failed", error=repr(exc))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
