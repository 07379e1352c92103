"""Bearer tokens: the constant-time comparison the gateway's identities use, and the internal token that
guards every service's own state-changing endpoints.

Inside the cluster only the gateway may change a service's state: every request to a service that is not a
plain read (``GET``/``HEAD``) - consumer control, deletes, marking read, preferences - and every ``/admin/*``
request needs ``Authorization: Bearer <INTERNAL_TOKEN>``, the token the gateway and the services share
(:class:`InternalTokenGuard`, installed by ``consumer_runtime.service.build_service``). With
``INTERNAL_TOKEN`` unset on the service those requests are refused (403, saying so), never open. Tokens are
compared in constant time on their UTF-8 bytes.
"""

from __future__ import annotations

import hmac

from pydantic import SecretStr
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "READ_METHODS",
    "InternalTokenGuard",
    "internal_refusal",
    "needs_internal_token",
    "same_secret",
]

#: The methods of a plain read: open inside the cluster (NetworkPolicy: only the gateway reaches a service).
READ_METHODS = frozenset({"GET", "HEAD"})


def same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def needs_internal_token(method: str, path: str) -> bool:
    """The decision, for every route of a service: a request that is not a plain read, and every request
    under ``/admin``, needs the internal token. A route added later falls under it without a decision of its
    own, so a new state-changing endpoint is never open by mistake."""
    return method.upper() not in READ_METHODS or path == "/admin" or path.startswith("/admin/")


def internal_refusal(
    configured: SecretStr | None, authorization: str | None, *, service: str
) -> tuple[int, str] | None:
    """Why a request that needs the internal token is refused, as (HTTP status, message); ``None`` when its
    ``Authorization`` header carries the configured ``INTERNAL_TOKEN`` as a bearer token."""
    expected = configured.get_secret_value() if configured is not None else ""
    if not expected:
        return 403, (
            f"refused: INTERNAL_TOKEN is not configured on the {service}, so its state-changing and /admin "
            "endpoints are disabled (the gateway calls them with the token it shares with the services)"
        )
    scheme, _, given = (authorization or "").partition(" ")
    if authorization is None or scheme.lower() != "bearer":
        return 401, "internal endpoint: only the gateway calls it ('Authorization: Bearer <INTERNAL_TOKEN>')"
    if not same_secret(given.strip(), expected):
        return 401, "internal token is not valid"
    return None


class InternalTokenGuard:
    """ASGI middleware: requests that :func:`needs_internal_token` are answered 401/403 (JSON ``detail``)
    unless they carry the service's ``INTERNAL_TOKEN`` - before routing, body parsing or validation, so an
    unauthenticated caller learns nothing about the route. Plain reads pass untouched."""

    def __init__(self, app: ASGIApp, *, service: str, token: SecretStr | None) -> None:
        self.app = app
        self.service = service
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not needs_internal_token(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = [v for k, v in scope["headers"] if k == b"authorization"]
        authorization = headers[0].decode("latin-1") if len(headers) == 1 else None
        refusal = internal_refusal(self.token, authorization, service=self.service)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, message = refusal
        challenge = {"WWW-Authenticate": f'Bearer realm="{self.service}"'} if status == 401 else None
        await JSONResponse({"detail": message}, status, challenge)(scope, receive, send)
