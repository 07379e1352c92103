"""Typed dependencies: the process-wide clients live on ``app.state`` (built in the lifespan)."""

from __future__ import annotations

from typing import Annotated, Any

from consumer_runtime.service import from_state
from fastapi import Depends
from platform_events import TopicSpec

from gateway.config import GatewaySettings
from gateway.control import ControlPlane
from gateway.kafka import KafkaGateway
from gateway.monitor import Checks
from gateway.ops.lag import GroupLags
from gateway.upstream import Upstreams

SettingsDep = Annotated[GatewaySettings, Depends(from_state("settings"))]
KafkaDep = Annotated[KafkaGateway, Depends(from_state("kafka"))]
UpstreamsDep = Annotated[Upstreams, Depends(from_state("upstreams"))]
ControlDep = Annotated[ControlPlane, Depends(from_state("control"))]
TopicsDep = Annotated[dict[str, TopicSpec[Any]], Depends(from_state("topics"))]
ChecksDep = Annotated[Checks, Depends(from_state("checks"))]
LagsDep = Annotated[GroupLags, Depends(from_state("lags"))]
