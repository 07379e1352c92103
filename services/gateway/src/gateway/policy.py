"""Every route's exposure, decided in one table (:data:`POLICY`) and enforced by one middleware
(:class:`Authorize`).

A decision is one of

* ``PUBLIC`` — no identity needed (probes, docs, the console's login page and assets);
* ``OPTIONAL`` — public, but a presented token identifies the caller (a bad one is a 401); the handler
  shows more to some identities (``/asyncapi.json``: the broker addresses to admins only);
* ``CONSOLE`` — the operator console: its own session cookie (an admin login) is checked by the console;
* ``Need(scope)`` — a token with that scope (``admin`` holds every scope); ``Need(scope, owner="user_id")``
  also needs the path's ``user_id`` to be the token's subject unless the caller is admin.

No token → 401 (``GATEWAY_AUTH=open``: the anonymous identity with the data-plane scopes, never admin); a
token without the scope, or for another user's notifications → 403. A method + path no entry matches needs a
valid identity too (no route can be reached by being left out: the route-decision test lists every route of
the app and fails on one without an entry here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from starlette._utils import get_route_path
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.identity import (
    ADMIN,
    ANONYMOUS,
    ANONYMOUS_OPEN,
    ISSUES_READ,
    ISSUES_WRITE,
    LOGS_READ,
    MESSAGES_READ,
    MESSAGES_WRITE,
    NOTIFICATIONS_SELF,
    Authenticator,
    AuthError,
    Identity,
)
from gateway.logs import log


@dataclass(frozen=True, slots=True)
class Need:
    """A token with ``scope``; with ``owner``, the path parameter that must be the token's subject."""

    scope: str
    owner: str | None = None


PUBLIC: Final = "public"
OPTIONAL: Final = "optional"
CONSOLE: Final = "console"
Decision = Need | str

_ADMIN = Need(ADMIN)
_SELF = Need(NOTIFICATIONS_SELF, owner="user_id")

#: (method, path template) → decision, for every route of the gateway (``HEAD`` is decided as ``GET``).
POLICY: dict[tuple[str, str], Decision] = {
    # ---- operations, documents, console login
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/health"): PUBLIC,  # the seed's health check (says "auth": "open" in open mode)
    ("GET", "/metrics"): PUBLIC,  # for Prometheus; the Ingress does not route it
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/static/{path:path}"): PUBLIC,
    ("GET", "/asyncapi.json"): OPTIONAL,  # broker addresses only for admins
    # ---- factory issues
    ("GET", "/api/kafka/status"): Need(ISSUES_READ),  # seed path: a summary; the details for admins only
    ("GET", "/api/kafka/issues"): Need(ISSUES_READ),
    ("GET", "/api/kafka/issues/{issue_id}"): Need(ISSUES_READ),
    ("DELETE", "/api/kafka/issues/{issue_id}"): Need(ISSUES_WRITE),
    ("GET", "/api/v1/issues"): Need(ISSUES_READ),
    ("GET", "/api/v1/issues/{issue_id}"): Need(ISSUES_READ),
    ("DELETE", "/api/v1/issues/{issue_id}"): Need(ISSUES_WRITE),
    ("GET", "/api/v1/issues/{issue_id}/sessions"): Need(ISSUES_READ),
    ("POST", "/api/v1/events/issues"): Need(ISSUES_WRITE),
    # ---- messages
    ("POST", "/messages"): Need(MESSAGES_WRITE),
    ("POST", "/api/v1/messages"): Need(MESSAGES_WRITE),
    ("PUT", "/api/v1/messages/{message_id}"): Need(MESSAGES_WRITE),
    ("DELETE", "/api/v1/messages/{message_id}"): Need(MESSAGES_WRITE),
    ("POST", "/api/v1/events/messages"): Need(MESSAGES_WRITE),
    ("POST", "/api/v1/events/user-activity"): Need(MESSAGES_WRITE),  # an app's event about its users
    ("GET", "/messages/search"): Need(MESSAGES_READ),
    ("GET", "/api/v1/search/messages"): Need(MESSAGES_READ),
    ("GET", "/api/v1/messages/{message_id}"): Need(MESSAGES_READ),
    # ---- logs
    ("GET", "/api/v1/logs"): Need(LOGS_READ),
    ("GET", "/api/v1/logs/{event_id}"): Need(LOGS_READ),
    # ---- notifications: the token's own (admin: anyone's)
    ("GET", "/api/v1/notifications/{user_id}"): _SELF,
    ("POST", "/api/v1/notifications/{user_id}/read"): _SELF,
    ("POST", "/api/v1/notifications/{user_id}/{notification_id}/read"): _SELF,
    ("GET", "/api/v1/notifications/{user_id}/stream"): _SELF,
    ("GET", "/api/v1/notifications/{user_id}/preferences"): _SELF,
    ("PUT", "/api/v1/notifications/{user_id}/preferences"): _SELF,
    # ---- services: status details and control
    ("GET", "/api/v1/services"): _ADMIN,
    ("GET", "/api/v1/services/{service}"): _ADMIN,
    ("POST", "/api/v1/services/{service}/{action}"): _ADMIN,
    ("POST", "/api/kafka/start"): _ADMIN,
    ("POST", "/api/kafka/stop"): _ADMIN,
    ("POST", "/api/kafka/restart"): _ADMIN,
    ("POST", "/api/v1/search/rebuild"): _ADMIN,
    ("GET", "/api/v1/search/rebuild"): _ADMIN,
    # ---- Kafka topology, records, dead letters
    ("GET", "/api/v1/topics"): _ADMIN,
    ("POST", "/api/v1/topics"): _ADMIN,
    ("GET", "/api/v1/topics/{topic}"): _ADMIN,
    ("GET", "/api/v1/topics/{topic}/messages"): _ADMIN,
    ("POST", "/api/v1/topics/{topic}/messages"): _ADMIN,
    ("GET", "/api/v1/consumer-groups"): _ADMIN,
    ("GET", "/api/v1/consumer-groups/{group_id}"): _ADMIN,
    ("GET", "/api/v1/consumer-groups/{group_id}/offsets"): _ADMIN,
    ("POST", "/api/v1/consumer-groups/{group_id}/offsets/reset"): _ADMIN,
    ("GET", "/api/v1/dlq"): _ADMIN,
    ("GET", "/api/v1/dlq/{topic}/messages"): _ADMIN,
    ("POST", "/api/v1/dlq/{topic}/replay"): _ADMIN,
    # ---- the console (operator web UI): an admin session of its own
    ("GET", "/console/login"): PUBLIC,
    ("POST", "/console/login"): PUBLIC,
    ("GET", "/console/static/{path:path}"): PUBLIC,
    ("POST", "/console/logout"): CONSOLE,
    ("GET", "/console/"): CONSOLE,
    ("GET", "/console/partials/services"): CONSOLE,
    ("POST", "/console/services/{service}/{action}"): CONSOLE,
    ("GET", "/console/topics"): CONSOLE,
    ("GET", "/console/logs"): CONSOLE,
    ("GET", "/console/topics/{topic}"): CONSOLE,
    ("GET", "/console/topics/{topic}/messages"): CONSOLE,
    ("POST", "/console/topics/{topic}/produce"): CONSOLE,
    ("GET", "/console/groups"): CONSOLE,
    ("GET", "/console/groups/{group_id}"): CONSOLE,
    ("POST", "/console/groups/{group_id}/reset"): CONSOLE,
    ("GET", "/console/dlq"): CONSOLE,
    ("GET", "/console/dlq/{topic}"): CONSOLE,
    ("POST", "/console/dlq/{topic}/replay"): CONSOLE,
    ("GET", "/console/issues"): CONSOLE,
    ("GET", "/console/issues/{issue_id}"): CONSOLE,
    ("GET", "/console/search"): CONSOLE,
    ("GET", "/console/search/results"): CONSOLE,
    ("GET", "/console/notifications"): CONSOLE,
    ("POST", "/console/notifications/{user_id}/read"): CONSOLE,
    ("GET", "/console/notifications/{user_id}/stream"): CONSOLE,
}

#: What a method + path that no entry matches needs (a 404/405, or a route added without an entry).
UNLISTED: Decision = Need("")


class Policy:
    """Finds the decision of a request: exact paths by dict, templates by their compiled regex (the same
    compiler, and so the same matching, as the app's routes)."""

    def __init__(self, table: dict[tuple[str, str], Decision]) -> None:
        self.exact: dict[tuple[str, str], Decision] = {}
        self.templates: dict[str, list[tuple[re.Pattern[str], Decision]]] = {}
        for (method, path), decision in table.items():
            if "{" not in path:
                self.exact[(method, path)] = decision
            else:
                regex, _, _ = compile_path(path)
                self.templates.setdefault(method, []).append((regex, decision))

    def decide(self, method: str, path: str) -> tuple[Decision, dict[str, str]]:
        method = "GET" if method == "HEAD" else method
        found = self.exact.get((method, path))
        if found is not None:
            return found, {}
        for regex, decision in self.templates.get(method, ()):
            match = regex.match(path)
            if match is not None:
                return decision, match.groupdict()
        if method == "GET" and not path.endswith("/"):
            slashed, _ = self.decide(method, path + "/")
            if slashed in (PUBLIC, CONSOLE):
                return PUBLIC, {}  # the router only redirects to the slashed path (e.g. /console)
        return UNLISTED, {}


_CHALLENGE = 'Bearer realm="platform-gateway"'


Answer = JSONResponse


def _answer(status: int, error: str, message: str, challenge: str) -> Answer:
    return JSONResponse({"error": error, "message": message}, status, {"WWW-Authenticate": challenge})


def unauthorized(message: str, *, invalid: bool) -> Answer:
    challenge = _CHALLENGE + (', error="invalid_token"' if invalid else "")
    return _answer(401, "unauthorized", message, challenge)


def forbidden(message: str, scope: str) -> Answer:
    return _answer(403, "forbidden", message, f'{_CHALLENGE}, error="insufficient_scope", scope="{scope}"')


class Authorize:
    """The one place a request's identity is established and its route's decision enforced.

    Sets ``request.state.identity`` (an :class:`~gateway.identity.Identity`) for everything behind it."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator, policy: Policy | None = None) -> None:
        self.app = app
        self.auth = authenticator
        self.policy = policy or Policy(POLICY)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        decision, params = self.policy.decide(scope["method"], get_route_path(scope))
        refusal = None
        identity: Identity | None = ANONYMOUS
        if decision in (PUBLIC, CONSOLE):
            pass
        else:
            headers = Headers(scope=scope)
            try:
                identity = await self.auth.identify(headers.get("authorization"), headers.get("x-api-key"))
            except AuthError as exc:
                identity, refusal = None, unauthorized(str(exc), invalid=True)
            if identity is None and refusal is None:
                if decision == OPTIONAL:
                    identity = ANONYMOUS
                elif self.auth.open:
                    identity = ANONYMOUS_OPEN
                else:
                    refusal = unauthorized("send 'Authorization: Bearer <token>'", invalid=False)
            if identity is not None and isinstance(decision, Need):
                refusal = self._check(identity, decision, params)
        if refusal is not None:
            if refusal.status_code == 403:
                log.info("forbidden", path=scope.get("path"), subject=identity.subject if identity else None)
            await refusal(scope, receive, send)
            return
        scope.setdefault("state", {})["identity"] = identity
        await self.app(scope, receive, send)

    @staticmethod
    def _check(identity: Identity, need: Need, params: dict[str, str]) -> Answer | None:
        if not need.scope:
            return None  # unlisted: any valid identity (the router answers 404/405)
        if not identity.allows(need.scope):
            return forbidden(f"this needs the scope {need.scope!r}", need.scope)
        if need.owner is not None and not identity.is_admin:
            owner = params.get(need.owner, "")  # the ASGI path is decoded once, as the router sees it
            if owner != identity.subject:
                return forbidden(
                    f"{need.owner} must be the token's subject ({identity.subject!r}) unless it has scope "
                    "'admin'",
                    need.scope,
                )
        return None


def identity_of(scope_or_state: object) -> Identity:
    """``request.state.identity`` (the anonymous identity when the middleware did not set one)."""
    state = getattr(scope_or_state, "state", None)
    found = getattr(state, "identity", None) if state is not None else None
    return found if isinstance(found, Identity) else ANONYMOUS
