"""The operational HTTP surface every service shares: health, readiness, metrics, consumer control."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from consumer_runtime.runner import ConsumerRunner
from consumer_runtime.status import Action, ConsumerStatus, ControlAck

Check = Callable[[], Awaitable[None]]


class Liveness(BaseModel):
    """``/healthz``: 200 with ``ok``; 503 with ``wedged`` and the reason."""

    status: Literal["ok", "wedged"]
    service: str
    reason: str | None = Field(None, description="why the consumer loop counts as wedged (503 only)")


class ServiceReadiness(BaseModel):
    """``/readyz``: each check's result ("ok" or why it failed); 503 when a gating check failed."""

    status: Literal["ready", "degraded", "not ready"]
    service: str
    checks: dict[str, str] = Field(description='check name → "ok" or the reason it failed')


#: ``/metrics`` in the OpenAPI document: Prometheus' text format, not JSON.
METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": f"Prometheus text exposition format ({CONTENT_TYPE_LATEST})",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


async def run_checks(checks: Mapping[str, Check], timeout_s: float = 3.0) -> tuple[bool, dict[str, str]]:
    """Run readiness checks concurrently; each answers "ok" or the reason it failed."""

    async def one(check: Check) -> str:
        try:
            await asyncio.wait_for(check(), timeout_s)
        except TimeoutError:
            return f"timeout after {timeout_s}s"
        except Exception as exc:
            return str(exc) or type(exc).__name__
        return "ok"

    names = list(checks)
    results = await asyncio.gather(*(one(checks[n]) for n in names))
    report = dict(zip(names, results, strict=True))
    return all(r == "ok" for r in results), report


def consumer_checks(runner: ConsumerRunner) -> dict[str, Check]:
    """The consumer's checks that gate readiness: its writes are not failing and its loop is not stuck."""

    async def progress() -> None:
        reason = runner.not_ready()
        if reason is not None and not runner.kafka_only(reason):
            raise RuntimeError(reason)

    return {"consumer": progress}


def kafka_checks(runner: ConsumerRunner) -> dict[str, Check]:
    """Reported by ``/readyz`` without gating it: with only Kafka down the service still serves reads."""

    async def consuming() -> None:
        reason = runner.not_ready()
        if reason is not None and runner.kafka_only(reason):
            raise RuntimeError(reason)

    return {"kafka": runner.check_kafka, "consuming": consuming}


def ops_router(
    *,
    service: str,
    runner: ConsumerRunner | None,
    checks: Mapping[str, Check],
    degraded_checks: Mapping[str, Check] | None = None,
) -> APIRouter:
    """``/healthz`` (liveness), ``/readyz`` (can serve: datastore + consumer not failing), ``/metrics``,
    ``/consumer/*``.

    Readiness gates the service's reads (a Kubernetes Service sends traffic only to ready pods), so it
    fails only for what breaks them or means the replica itself is wedged: a datastore check, writes
    failing, a stuck loop. Kafka being unreachable (and ``degraded_checks``, e.g. the notifier's live
    tail) is reported as ``"status": "degraded"`` with a 200: reads keep working, the consumer reconnects by
    itself, and lag is watched by alerts on the broker-side lag. Liveness fails only when the loop should
    poll and has not for 3 × ``CONSUMER_STUCK_AFTER_S`` — a wedged process, which a restart cures.
    """
    router = APIRouter(tags=["operations"])
    gating = {**(consumer_checks(runner) if runner else {}), **checks}
    soft = {**(kafka_checks(runner) if runner else {}), **(degraded_checks or {})}

    @router.get(
        "/healthz",
        summary="Liveness: the process answers and its consumer loop is not wedged",
        responses={
            200: {"model": Liveness},
            503: {"model": Liveness, "description": "The consumer loop is wedged: restart the process"},
        },
    )
    async def healthz() -> JSONResponse:
        wedged = runner.wedged() if runner is not None else None
        body = {"status": "ok" if wedged is None else "wedged", "service": service}
        if wedged is not None:
            body["reason"] = wedged
        return JSONResponse(body, status_code=200 if wedged is None else 503)

    @router.get(
        "/readyz",
        summary="Readiness: the datastore answers, the consumer is not failing (Kafka reported, not gating)",
        responses={
            200: {"model": ServiceReadiness},
            503: {"model": ServiceReadiness, "description": "Not ready: the failing check is named"},
        },
    )
    async def readyz() -> JSONResponse:
        (ok, report), (fine, extra) = await asyncio.gather(run_checks(gating), run_checks(soft))
        status = "not ready" if not ok else "ready" if fine else "degraded"
        body = {"status": status, "service": service, "checks": {**report, **extra}}
        return JSONResponse(body, status_code=200 if ok else 503)

    @router.get(
        "/metrics", summary="Prometheus metrics", response_class=Response, responses=METRICS_RESPONSES
    )
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    if runner is not None:

        @router.get(
            "/consumer/status", summary="Consumer state, assignment, offsets, lag, counts, last error"
        )
        async def consumer_status() -> ConsumerStatus:
            return runner.status()

        @router.post(
            "/consumer/{action}",
            summary="Control the consumer: start, stop, pause, resume, restart",
            description="Answers at once with the command taken and the state it leads to (`leads_to`); "
            "a start, stop or restart completes in the background and its progress shows in `state`.",
        )
        async def consumer_control(
            action: Action,
            control_offset: Annotated[
                int | None,
                Query(
                    ge=0,
                    description="the offset at which the gateway recorded this command in the control "
                    "topic: this replica's control follower then does not apply it a second time",
                ),
            ] = None,
        ) -> ControlAck:
            if not runner.settings.kafka_enabled:
                raise HTTPException(409, "KAFKA_ENABLED=false: the consumer is disabled")
            return runner.request(action, control_offset=control_offset)

    return router
