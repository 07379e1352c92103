"""The gateway's logger (structlog JSON, configured by ``consumer_runtime.configure_logging``)."""

from __future__ import annotations

from typing import Any

from consumer_runtime import get_logger

log: Any = get_logger("gateway")
