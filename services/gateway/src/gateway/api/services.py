"""Status and control of every service's consumer, plus the seed's ``/api/kafka/status|start|stop|restart``.

A control call answers 200 when the service applied it, 202 when it is only recorded in the control topic
(the service could not be reached; every replica still follows it): see :mod:`gateway.ops.services`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from consumer_runtime.status import ConsumerStatus, Counts, Desired, State
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from gateway.auth import Admin
from gateway.control import Action
from gateway.deps import ControlDep, LagsDep, UpstreamsDep
from gateway.errors import error_responses
from gateway.ops import services as ops
from gateway.ops.services import ControlResult, ServicesStatus, ServiceStatus
from gateway.policy import identity_of

router = APIRouter()
ServiceName = Literal["issue-ingestor", "log-sink", "search-indexer", "notifier"]
SEED_SERVICE = "issue-ingestor"

#: The 202 of a control call: the command is recorded, the service's immediate call failed.
RECORDED: dict[int | str, dict[str, Any]] = {
    202: {"model": ControlResult, "description": "Recorded; the service could not be reached now"}
}


def _answer(result: ControlResult) -> JSONResponse:
    return JSONResponse(result.model_dump(), status_code=200 if result.applied else 202)


@router.get(
    "/api/v1/services",
    tags=["services"],
    summary="Consumer status of every service (state, assignment, lag, last error, counts, desired state)",
    response_model=ServicesStatus,
)
async def list_services(upstreams: UpstreamsDep, control: ControlDep, lags: LagsDep) -> ServicesStatus:
    return await ops.list_services(upstreams, control, lags)


@router.get(
    "/api/v1/services/{service}",
    tags=["services"],
    summary="Consumer status of one service",
    response_model=ServiceStatus,
    responses=error_responses(404, 503),
)
async def get_service(
    upstreams: UpstreamsDep, control: ControlDep, lags: LagsDep, service: ServiceName
) -> ServiceStatus:
    return await ops.get_service(upstreams, control, lags, service)


@router.post(
    "/api/v1/services/{service}/{action}",
    tags=["services"],
    summary="pause / resume / stop / start / restart a service's consumer (every replica; survives restarts)",
    dependencies=[Admin],
    response_model=ControlResult,
    responses={**RECORDED, **error_responses(401, 403, 404, 422, 503)},
)
async def post_control(
    upstreams: UpstreamsDep,
    control: ControlDep,
    service: ServiceName,
    action: Annotated[Action, Path(description="pause | resume | stop | start | restart")],
) -> JSONResponse:
    return _answer(await ops.control(upstreams, control, service, action))


# ------------------------------------------------------------------------------------------ seed paths
class ConsumerStatusSummary(BaseModel):
    """What ``GET /api/kafka/status`` shows a caller without ``admin`` (no errors, assignment or holders)."""

    name: str
    group: str
    topics: list[str]
    state: State
    desired: Desired
    paused: bool
    enabled: bool
    ready: bool
    lag: int
    counts: Counts
    started_at: float | None


SEED_STATUS_SUMMARY = frozenset(ConsumerStatusSummary.model_fields)


@router.get(
    "/api/kafka/status",
    tags=["seed-compatible"],
    summary="Issue consumer status (seed 000)",
    description="The whole status with `admin`; the summary (no assignment, errors or pause holders) "
    "without it.",
    response_model=ConsumerStatus | ConsumerStatusSummary,
    responses=error_responses(503),
)
async def seed_status(upstreams: UpstreamsDep, request: Request) -> Any:
    status = await upstreams.json(SEED_SERVICE, "GET", "/consumer/status")
    if identity_of(request).is_admin or not isinstance(status, dict):
        return status
    return {k: v for k, v in status.items() if k in SEED_STATUS_SUMMARY}  # the details are for admins


def _seed_control_route(action: Action) -> None:
    async def seed_control(upstreams: UpstreamsDep, control: ControlDep) -> JSONResponse:
        return _answer(await ops.control(upstreams, control, SEED_SERVICE, action))

    router.add_api_route(
        f"/api/kafka/{action}",
        seed_control,
        methods=["POST"],
        name=f"seed_{action}",
        tags=["seed-compatible"],
        summary=f"{action.capitalize()} the issue consumer (seed 000; admin token)",
        dependencies=[Admin],
        response_model=ControlResult,
        responses={**RECORDED, **error_responses(401, 403, 503)},
    )


_SEED_ACTIONS: tuple[Action, ...] = ("start", "stop", "restart")
for _action in _SEED_ACTIONS:
    _seed_control_route(_action)
