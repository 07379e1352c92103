"""The operational HTTP surface every service shares: health, readiness, metrics, consumer control."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from consumer_runtime.runner import ConsumerRunner
from consumer_runtime.status import Action, ConsumerStatus, ControlAck

Check = Callable[[], Awaitable[None]]


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
    async def progress() -> None:
        runner.check_progress()

    return {"kafka": runner.check_kafka, "consumer": progress}


def ops_router(
    *,
    service: str,
    runner: ConsumerRunner | None,
    checks: Mapping[str, Check],
) -> APIRouter:
    """``/healthz`` (process alive), ``/readyz`` (dependencies + consumer), ``/metrics``, ``/consumer/*``."""
    router = APIRouter(tags=["operations"])
    all_checks = {**(consumer_checks(runner) if runner else {}), **checks}

    @router.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @router.get("/readyz", summary="Readiness: dependencies reachable and the consumer not stuck")
    async def readyz() -> JSONResponse:
        ok, report = await run_checks(all_checks)
        body = {"status": "ready" if ok else "not ready", "service": service, "checks": report}
        return JSONResponse(body, status_code=200 if ok else 503)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
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
