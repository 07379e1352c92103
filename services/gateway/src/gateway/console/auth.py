"""Console login: the admin token, posted once and kept in an HttpOnly, SameSite=Strict cookie.

Every console route except the login page and the static assets needs the cookie (compared in constant
time with ``ADMIN_TOKEN``). Browsers send a SameSite=Strict cookie only with same-site requests, and every
state-changing request must also come from the console's own origin (Origin/Referer checked), so another
site cannot drive the console with the operator's cookie.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from consumer_runtime.auth import same_secret
from fastapi import Request

from gateway.config import GatewaySettings

COOKIE = "gw_console"
MAX_AGE_S = 8 * 3600


class LoginRequired(Exception):
    """Raised by :func:`require_session`; the console answers with a redirect to the login page."""


class ForeignOrigin(Exception):
    """A state-changing request from another origin."""


def gateway_settings(request: Request) -> GatewaySettings:
    """The gateway's settings (the console is a mounted sub-application; ``request.app`` is the console)."""
    settings: GatewaySettings = request.app.state.gateway.state.settings
    return settings


def admin_enabled(request: Request) -> bool:
    token = gateway_settings(request).admin_token
    return token is not None and bool(token.get_secret_value())


def token_valid(request: Request, token: str | None) -> bool:
    expected = gateway_settings(request).admin_token
    if expected is None or not expected.get_secret_value() or not token:
        return False
    return same_secret(token, expected.get_secret_value())


def same_origin(request: Request) -> bool:
    """The Origin (else Referer) of the request names this host; requests without either are refused."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return False
    parts = urlsplit(source)
    return parts.netloc == request.headers.get("host", request.url.netloc)


async def require_session(request: Request) -> None:
    if not token_valid(request, request.cookies.get(COOKIE)):
        raise LoginRequired()
    if request.method not in ("GET", "HEAD") and not same_origin(request):
        raise ForeignOrigin()


def cookie_path(request: Request) -> str:
    return base_path(request) or "/"


def base_path(request: Request) -> str:
    """Where the console is mounted (``/console``, behind any root path of the gateway)."""
    return str(request.scope.get("root_path", "")).rstrip("/")
