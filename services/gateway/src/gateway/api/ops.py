"""Operations: /healthz (alive), /readyz and the seed's /health (dependencies), /metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from consumer_runtime import run_checks
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from gateway.deps import KafkaDep, UpstreamsDep
from gateway.errors import ApiError
from gateway.logs import log

router = APIRouter(tags=["operations"])

READY = Gauge(
    "gateway_dependency_ready",
    "1 when the dependency (kafka or a service's /readyz) was ready at the last check "
    "(/readyz, /health or a /metrics scrape)",
    ["dependency"],
)


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok", "service": "gateway"}


async def _upstream_ready(upstreams: UpstreamsDep, name: str) -> str:
    try:
        response = await upstreams.call(name, "GET", "/readyz", timeout=3.0)
    except ApiError as exc:
        return exc.body.message
    if response.status_code == 200:
        return "ok"
    try:
        checks = response.json().get("checks", {})
        failing = {k: v for k, v in checks.items() if v != "ok"}
    except (ValueError, AttributeError):
        failing = {}
    return f"not ready: {failing or response.status_code}"


async def readiness(kafka: KafkaDep, upstreams: UpstreamsDep) -> tuple[int, dict[str, Any]]:
    """Kafka is the gateway's own dependency (publish, admin): it decides readiness. The services are
    reported (``degraded``) but do not make the gateway unready: their own endpoints keep working."""
    (kafka_ok, kafka_report), services = await asyncio.gather(
        run_checks({"kafka": kafka.ping}),
        asyncio.gather(*(_upstream_ready(upstreams, n) for n in upstreams.names)),
    )
    service_report = dict(zip(upstreams.names, services, strict=True))
    for name, result in {**kafka_report, **service_report}.items():
        READY.labels(name).set(1 if result == "ok" else 0)
    all_ok = kafka_ok and all(v == "ok" for v in services)
    status = "ready" if all_ok else ("degraded" if kafka_ok else "not ready")
    body = {"status": status, "service": "gateway", "checks": {**kafka_report, **service_report}}
    return (200 if kafka_ok else 503), body


@router.get(
    "/readyz",
    summary="Readiness: Kafka reachable (503 otherwise); each service's readiness reported (degraded)",
)
async def readyz(kafka: KafkaDep, upstreams: UpstreamsDep) -> JSONResponse:
    code, body = await readiness(kafka, upstreams)
    return JSONResponse(body, status_code=code)


@router.get("/health", tags=["seed-compatible"], summary="System health check (seed 000)")
async def health(kafka: KafkaDep, upstreams: UpstreamsDep) -> JSONResponse:
    code, body = await readiness(kafka, upstreams)
    body["status"] = {"ready": "healthy", "degraded": "degraded"}.get(body["status"], "unhealthy")
    return JSONResponse(body, status_code=code)


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
