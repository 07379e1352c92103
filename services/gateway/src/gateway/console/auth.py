"""Console login: the admin token, posted once, buys a server-side session; the cookie holds only the
session's signed id.

The session table lives in this gateway process (:class:`Sessions`): a session ends when it expires
(``CONSOLE_SESSION_TTL_S``), at logout (revoked server-side: the old cookie is refused from then on) or when
the process restarts. The cookie (HttpOnly, SameSite=Strict, ``Secure`` when the request came over TLS,
as the trusted proxies tell — :class:`gateway.middleware.TrustedProxies`) carries the id signed with a key
of this process (``itsdangerous``) and its own timestamp: a forged, altered or stale cookie is refused
before the table is looked at. Login attempts are rate-limited per client (``CONSOLE_LOGIN_RATE_LIMIT``).

Every console route except the login page and the static assets needs a live session. Browsers send a
SameSite=Strict cookie only with same-site requests, and every state-changing request must also come from
the console's own origin (Origin/Referer checked), so another site cannot drive the console with the
operator's cookie.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import urlsplit

from consumer_runtime.auth import same_secret
from fastapi import Request
from itsdangerous import BadSignature, TimestampSigner

from gateway.abuse import RateLimit
from gateway.config import GatewaySettings

COOKIE = "gw_console"


class Sessions:
    """Console sessions of this process: id → expiry, at most ``max_sessions`` (the oldest go first)."""

    def __init__(self, ttl_s: int, max_sessions: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self.clock = clock
        self._signer = TimestampSigner(secrets.token_bytes(32), salt="gateway-console-session")
        self._expiry: OrderedDict[str, float] = OrderedDict()  # by creation: the oldest first

    def __len__(self) -> int:
        return len(self._expiry)

    def create(self) -> str:
        """A new session; returns the cookie value (the signed id)."""
        self._drop_expired()
        session_id = secrets.token_urlsafe(32)
        self._expiry[session_id] = self.clock() + self.ttl_s
        while len(self._expiry) > self.max_sessions:
            self._expiry.popitem(last=False)
        return self._signer.sign(session_id).decode("ascii")

    def _id(self, cookie: str | None, *, max_age: int | None) -> str | None:
        if not cookie:
            return None
        try:
            return self._signer.unsign(cookie, max_age=max_age).decode("ascii")
        except (BadSignature, UnicodeError):
            return None

    def valid(self, cookie: str | None) -> bool:
        """The cookie names a live session of this process."""
        session_id = self._id(cookie, max_age=self.ttl_s)
        if session_id is None:
            return False
        expires = self._expiry.get(session_id)
        if expires is None:
            return False
        if expires <= self.clock():
            del self._expiry[session_id]
            return False
        return True

    def revoke(self, cookie: str | None) -> bool:
        """End the cookie's session now; whether there was one."""
        session_id = self._id(cookie, max_age=None)
        return session_id is not None and self._expiry.pop(session_id, None) is not None

    def _drop_expired(self) -> None:
        now = self.clock()
        for session_id in [s for s, expires in self._expiry.items() if expires <= now]:
            del self._expiry[session_id]


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


def sessions(request: Request) -> Sessions:
    """The console's session table (made at first use, from the gateway's settings)."""
    state = request.app.state
    table: Sessions | None = getattr(state, "sessions", None)
    if table is None:
        settings = gateway_settings(request)
        table = state.sessions = Sessions(settings.console_session_ttl_s, settings.console_max_sessions)
    return table


def login_limit(request: Request) -> RateLimit:
    """Login attempts per client address (made at first use, from the gateway's settings)."""
    state = request.app.state
    limit: RateLimit | None = getattr(state, "login_limit", None)
    if limit is None:
        limit = state.login_limit = RateLimit(
            "console_login", gateway_settings(request).console_login_rate_limit
        )
    return limit


async def require_session(request: Request) -> None:
    if not sessions(request).valid(request.cookies.get(COOKIE)):
        raise LoginRequired()
    if request.method not in ("GET", "HEAD") and not same_origin(request):
        raise ForeignOrigin()


def cookie_path(request: Request) -> str:
    return base_path(request) or "/"


def base_path(request: Request) -> str:
    """Where the console is mounted (``/console``, behind any root path of the gateway)."""
    return str(request.scope.get("root_path", "")).rstrip("/")
