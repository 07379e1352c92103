"""Status and control of every service's consumer, plus the seed's ``/api/kafka/status|start|stop|restart``.

Control writes the desired state to the compacted control topic first (every replica follows it and it
survives restarts), then calls the service's ``/consumer/{action}`` for immediate effect on the replica
the call reaches. If that call fails the command still stands (202, ``applied: false``).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from gateway.auth import Admin
from gateway.config import SERVICES
from gateway.control import Action
from gateway.deps import ControlDep, UpstreamsDep
from gateway.errors import ApiError, error_responses
from gateway.logs import log

router = APIRouter()
ServiceName = Literal["issue-ingestor", "log-sink", "search-indexer", "notifier"]
SEED_SERVICE = "issue-ingestor"


class ServiceStatus(BaseModel):
    service: str
    url: str
    reachable: bool
    status: dict[str, Any] | None = Field(
        None, description="The service's /consumer/status: state, assignment, lag, last_error, counts"
    )
    error: str | None = None
    desired: dict[str, Any] | None = Field(None, description="Latest command in the control topic")


class ServicesStatus(BaseModel):
    services: list[ServiceStatus]


class ControlResult(BaseModel):
    service: str
    action: str
    command: dict[str, Any]
    control_topic: str
    control_partition: int
    control_offset: int
    applied: bool = Field(description="The service answered the immediate call")
    status: dict[str, Any] | None = None
    error: str | None = None


#: The 202 of a control call: the command is recorded, the service's immediate call failed.
RECORDED: dict[int | str, dict[str, Any]] = {
    202: {"model": ControlResult, "description": "Recorded; the service could not be reached now"}
}


async def service_status(upstreams: UpstreamsDep, name: str, desired: dict[str, Any] | None) -> ServiceStatus:
    url = upstreams.urls[name]
    try:
        status = await upstreams.json(name, "GET", "/consumer/status", timeout=3.0)
    except ApiError as exc:
        return ServiceStatus(service=name, url=url, reachable=False, error=exc.body.message, desired=desired)
    return ServiceStatus(service=name, url=url, reachable=True, status=status, desired=desired)


async def _desired(control: ControlDep) -> dict[str, dict[str, Any]]:
    try:
        return await control.desired()
    except Exception as exc:  # Kafka down: statuses are still worth showing
        log.warning("control topic unreadable", error=repr(exc))
        return {}


@router.get(
    "/api/v1/services",
    tags=["services"],
    summary="Consumer status of every service (state, assignment, lag, last error, counts, desired state)",
    response_model=ServicesStatus,
)
async def list_services(upstreams: UpstreamsDep, control: ControlDep) -> ServicesStatus:
    desired = await _desired(control)
    results = await asyncio.gather(*(service_status(upstreams, n, desired.get(n)) for n in SERVICES))
    return ServicesStatus(services=list(results))


@router.get(
    "/api/v1/services/{service}",
    tags=["services"],
    summary="Consumer status of one service",
    response_model=ServiceStatus,
    responses=error_responses(404, 503),
)
async def get_service(upstreams: UpstreamsDep, control: ControlDep, service: ServiceName) -> ServiceStatus:
    desired = await _desired(control)
    status = await service_status(upstreams, service, desired.get(service))
    if not status.reachable:
        raise ApiError(503, "upstream_unavailable", status.error or "unreachable", service=service)
    return status


async def control_service(
    upstreams: UpstreamsDep, control: ControlDep, service: str, action: Action
) -> JSONResponse:
    command, sent = await control.request(service, action, requested_by="gateway-admin")
    result = ControlResult(
        service=service,
        action=action,
        command=command,
        control_topic=sent.topic,
        control_partition=sent.partition,
        control_offset=sent.offset,
        applied=False,
    )
    try:
        result.status = await upstreams.json(service, "POST", f"/consumer/{action}", timeout=35.0)
        result.applied = True
    except ApiError as exc:
        result.error = exc.body.message
        log.warning(
            "control call failed; desired state recorded",
            service=service,
            action=action,
            error=exc.body.message,
        )
    log.info("service control", service=service, action=action, applied=result.applied)
    return JSONResponse(result.model_dump(), status_code=200 if result.applied else 202)


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
    return await control_service(upstreams, control, service, action)


# ------------------------------------------------------------------------------------------ seed paths
@router.get(
    "/api/kafka/status",
    tags=["seed-compatible"],
    summary="Issue consumer status (seed 000)",
    responses=error_responses(503),
)
async def seed_status(upstreams: UpstreamsDep) -> Any:
    return await upstreams.json(SEED_SERVICE, "GET", "/consumer/status")


def _seed_control_route(action: Action) -> None:
    async def seed_control(upstreams: UpstreamsDep, control: ControlDep) -> JSONResponse:
        return await control_service(upstreams, control, SEED_SERVICE, action)

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
