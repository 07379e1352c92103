"""The admin bearer token every service's admin endpoints share (the gateway's and a service's own).

Admin endpoints are never open: with ``ADMIN_TOKEN`` unset they are refused (403, saying so); otherwise the
request needs ``Authorization: Bearer <ADMIN_TOKEN>`` (401 without it or with another token). Tokens are
compared in constant time on their UTF-8 bytes.
"""

from __future__ import annotations

import hmac

from pydantic import SecretStr

__all__ = ["admin_refusal", "same_secret"]


def same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def admin_refusal(
    configured: SecretStr | None, scheme: str | None, given: str | None, *, service: str
) -> tuple[int, str] | None:
    """Why an admin request is refused, as (HTTP status, message); ``None`` when its bearer token is the
    configured one. ``scheme``/``given``: the two parts of its Authorization header (``None`` if absent)."""
    expected = configured.get_secret_value() if configured is not None else ""
    if not expected:
        return 403, f"admin endpoints are disabled: ADMIN_TOKEN is not configured on the {service}"
    if given is None or (scheme or "").lower() != "bearer":
        return 401, "admin endpoint: send 'Authorization: Bearer <ADMIN_TOKEN>'"
    if not same_secret(given, expected):
        return 401, "admin token is not valid"
    return None
