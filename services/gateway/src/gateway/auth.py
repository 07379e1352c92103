"""Admin bearer token and the optional API key of the app-facing endpoints.

Admin endpoints are never open: with ``ADMIN_TOKEN`` unset they answer 403 saying so. Tokens are compared
in constant time (``consumer_runtime.auth``, shared with the services' own admin endpoints).
"""

from __future__ import annotations

from typing import Annotated

from consumer_runtime.auth import admin_refusal, same_secret
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from gateway.config import GatewaySettings
from gateway.errors import ApiError

bearer = HTTPBearer(auto_error=False, scheme_name="adminToken", description="ADMIN_TOKEN as a bearer token")
api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKey", description="Only when API_KEY is configured"
)

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="platform-gateway"'}


def settings_of(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


async def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    refusal = admin_refusal(
        settings_of(request).admin_token,
        credentials.scheme if credentials is not None else None,
        credentials.credentials if credentials is not None else None,
        service="gateway",
    )
    if refusal is not None:
        status, message = refusal
        if status == 403:
            raise ApiError(403, "admin_disabled", message)
        raise ApiError(status, "unauthorized", message, headers=_CHALLENGE)


async def require_api_key(request: Request, key: Annotated[str | None, Depends(api_key_header)]) -> None:
    """App-facing endpoints: open unless ``API_KEY`` is set, then ``X-API-Key`` must match."""
    expected = settings_of(request).api_key
    if expected is None or not expected.get_secret_value():
        return
    if key is None or not same_secret(key, expected.get_secret_value()):
        raise ApiError(401, "unauthorized", "send a valid 'X-API-Key' header", headers=_CHALLENGE)


Admin = Depends(require_admin)
AppKey = Depends(require_api_key)
