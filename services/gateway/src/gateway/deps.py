"""Typed dependencies: the process-wide clients live on ``app.state`` (built in the lifespan)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from platform_events import TopicSpec

from gateway.config import GatewaySettings
from gateway.control import ControlPlane
from gateway.kafka import KafkaGateway
from gateway.upstream import Upstreams


async def _settings(request: Request) -> GatewaySettings:
    value: GatewaySettings = request.app.state.settings
    return value


async def _kafka(request: Request) -> KafkaGateway:
    value: KafkaGateway = request.app.state.kafka
    return value


async def _upstreams(request: Request) -> Upstreams:
    value: Upstreams = request.app.state.upstreams
    return value


async def _control(request: Request) -> ControlPlane:
    value: ControlPlane = request.app.state.control
    return value


async def _topics(request: Request) -> dict[str, TopicSpec[Any]]:
    value: dict[str, TopicSpec[Any]] = request.app.state.topics
    return value


SettingsDep = Annotated[GatewaySettings, Depends(_settings)]
KafkaDep = Annotated[KafkaGateway, Depends(_kafka)]
UpstreamsDep = Annotated[Upstreams, Depends(_upstreams)]
ControlDep = Annotated[ControlPlane, Depends(_control)]
TopicsDep = Annotated[dict[str, TopicSpec[Any]], Depends(_topics)]
