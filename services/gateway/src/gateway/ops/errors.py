"""What an operation can refuse, in domain terms. The HTTP status of each kind is decided once, at the
edge (``gateway.errors.STATUS_OF``): the API answers it as an ``ErrorBody``, the console as an alert."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class OpsError(Exception):
    """An operation refused: ``code`` is machine-readable, ``message`` for a human, ``field`` the input
    at fault (dotted path), ``service`` the dependency at fault."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        field: str | None = None,
        details: Sequence[dict[str, Any]] | None = None,
        service: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.details = list(details) if details is not None else None
        self.service = service


class NotFound(OpsError):
    """The named topic, partition, group, dead letter or service does not exist."""


class Conflict(OpsError):
    """The request clashes with the current state (topic exists, group has live members)."""


class Invalid(OpsError):
    """The input is well-formed but not acceptable (out of range, not a valid event)."""


class Unavailable(OpsError):
    """A dependency (Kafka, a service) did not answer."""


def unknown(what: str, message: str) -> NotFound:
    """``<what>_not_found``: an unknown topic, group, …"""
    return NotFound(f"{what}_not_found", message)
