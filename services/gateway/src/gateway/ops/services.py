"""The services' consumers: status (with the desired state from the control topic), control, and the
gateway's readiness (Kafka decides it; each service's readiness is reported).

Control writes the desired state to the compacted control topic first (every replica follows it and it
survives restarts), then calls the service's ``/consumer/{action}`` for immediate effect on the replica
the call reaches. If that call fails the command still stands (``applied: false``).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast, get_args

from prometheus_client import Gauge
from pydantic import BaseModel, Field

from gateway.config import SERVICES
from gateway.control import Action, ControlPlane
from gateway.errors import ApiError
from gateway.kafka import KafkaGateway
from gateway.logs import log
from gateway.monitor import CheckFn, Checks
from gateway.ops.errors import Invalid, NotFound, Unavailable
from gateway.ops.lag import GroupLag, GroupLags
from gateway.upstream import Upstreams

ACTIONS: tuple[str, ...] = get_args(Action)
READY = Gauge(
    "gateway_dependency_ready",
    "1 when the dependency (kafka or a service's /readyz) was ready at its last background check",
    ["dependency"],
)


class ServiceStatus(BaseModel):
    service: str
    url: str
    reachable: bool
    status: dict[str, Any] | None = Field(
        None, description="The service's /consumer/status: state, assignment, lag, last_error, counts"
    )
    error: str | None = None
    desired: dict[str, Any] | None = Field(None, description="Latest command in the control topic")
    lag: int | None = Field(
        None,
        description="The group's lag from the broker (log end − committed offset), whatever the consumer's "
        "state: the figure the console and platform_consumer_group_lag show (status.lag is the replica's "
        "own view of the partitions it holds)",
    )
    group_lag: GroupLag | None = None


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


class Readiness(BaseModel):
    """``kafka_ok`` decides readiness; ``status`` is ready, degraded (a service is not) or not ready."""

    kafka_ok: bool
    status: str
    checks: dict[str, str]
    checked_s_ago: dict[str, float] = Field(
        default_factory=dict, description="Age of each check's result (checked in the background)"
    )


async def _status(upstreams: Upstreams, name: str, desired: dict[str, Any] | None) -> ServiceStatus:
    url = upstreams.urls[name]
    try:
        status = await upstreams.json(name, "GET", "/consumer/status", timeout=3.0)
    except ApiError as exc:  # unreachable or refused: reported, not raised
        return ServiceStatus(service=name, url=url, reachable=False, error=exc.body.message, desired=desired)
    return ServiceStatus(service=name, url=url, reachable=True, status=status, desired=desired)


async def _desired(control: ControlPlane) -> dict[str, dict[str, Any]]:
    try:
        return await control.desired()
    except Exception as exc:  # Kafka down: statuses are still worth showing
        log.warning("control topic unreadable", error=repr(exc))
        return {}


async def _with_lag(lags: GroupLags, statuses: list[ServiceStatus]) -> list[ServiceStatus]:
    """Each status with its group's lag measured from the broker (the service's own report is not needed:
    a stopped or unreachable consumer has its lag too)."""
    for s in statuses:
        lags.learn(s.service, s.status)
    measured = await lags.measure()
    for s in statuses:
        s.group_lag = measured.get(s.service)
        s.lag = s.group_lag.lag if s.group_lag is not None else None
    return statuses


async def list_services(upstreams: Upstreams, control: ControlPlane, lags: GroupLags) -> ServicesStatus:
    desired = await _desired(control)
    results = await asyncio.gather(*(_status(upstreams, n, desired.get(n)) for n in SERVICES))
    return ServicesStatus(services=await _with_lag(lags, list(results)))


async def get_service(
    upstreams: Upstreams, control: ControlPlane, lags: GroupLags, service: str
) -> ServiceStatus:
    """One service's status; :class:`Unavailable` when it cannot be reached."""
    desired = await _desired(control)
    status = await _status(upstreams, service, desired.get(service))
    if not status.reachable:
        raise Unavailable("upstream_unavailable", status.error or "unreachable", service=service)
    return (await _with_lag(lags, [status]))[0]


async def control(upstreams: Upstreams, plane: ControlPlane, service: str, action: str) -> ControlResult:
    """Record ``action`` for ``service`` in the control topic, then ask the service to apply it now."""
    if service not in SERVICES:
        raise NotFound("service_not_found", f"unknown service {service!r}")
    if action not in ACTIONS:
        raise Invalid("error", f"unknown action {action!r}: use {', '.join(ACTIONS)}", field="action")
    command, sent = await plane.request(service, cast(Action, action), requested_by="gateway-admin")
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
        # The replica reached here applies the command now; its control follower then skips that offset,
        # so the command is applied once per replica. The service answers at once (progress: its status).
        result.status = await upstreams.json(
            service,
            "POST",
            f"/consumer/{action}",
            params={"control_offset": sent.offset} if sent.partition == 0 else None,
            timeout=10.0,
        )
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
    return result


async def _upstream_ready(upstreams: Upstreams, name: str, timeout_s: float) -> str:
    try:
        response = await upstreams.call(name, "GET", "/readyz", timeout=timeout_s)
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


def readiness_checks(kafka: KafkaGateway, upstreams: Upstreams, timeout_s: float) -> dict[str, CheckFn]:
    """The gateway's readiness checks, run in the background by :class:`gateway.monitor.Checks`: Kafka (its
    own dependency) and each service's ``/readyz`` (given ``timeout_s`` to answer, so a service slowed down
    by its datastore's outage still reports that cause)."""

    async def kafka_ok() -> str:
        await kafka.ping()
        return "ok"

    def upstream(name: str) -> CheckFn:
        return lambda: _upstream_ready(upstreams, name, timeout_s)

    return {"kafka": kafka_ok, **{name: upstream(name) for name in upstreams.names}}


def record_ready(dependency: str, result: str) -> None:
    """``gateway_dependency_ready``: set as each background check answers."""
    READY.labels(dependency).set(1 if result == "ok" else 0)


async def readiness(checks: Checks) -> Readiness:
    """Kafka is the gateway's own dependency (publish, admin): it decides readiness. The services are
    reported (``degraded``) but do not make the gateway unready: their own endpoints keep working. Answered
    from the background checks' last results (see :mod:`gateway.monitor`), with their age."""
    report = await checks.latest()
    kafka_ok = report.get("kafka") == "ok"
    all_ok = all(v == "ok" for v in report.values())
    status = "ready" if all_ok else ("degraded" if kafka_ok else "not ready")
    return Readiness(kafka_ok=kafka_ok, status=status, checks=report, checked_s_ago=checks.ages())
