"""The operator console (``/console``) and the AsyncAPI document (``/asyncapi.json``).

The console is a server-rendered web UI (Jinja2 templates + vendored htmx, no CDN, no build step) mounted
as a sub-application of the gateway. Its pages and forms call the same functions as ``/api/v1`` (service
control, Kafka admin, DLQ replay, query forwarding), so it adds no second implementation of anything.
Login: the admin token buys a server-side session; an HttpOnly, SameSite=Strict cookie holds its signed id.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from platform_events.asyncapi import asyncapi_document
from starlette.requests import Request

from gateway.console.app import create_console
from gateway.policy import identity_of

PREFIX = "/console"


def install(app: FastAPI) -> None:
    """Mount the console at ``/console`` and serve ``/asyncapi.json`` next to ``/openapi.json`` (with the
    broker addresses for an admin caller only)."""
    app.mount(PREFIX, create_console(app), name="console")

    async def asyncapi(request: Request) -> JSONResponse:
        settings = request.app.state.settings
        document = asyncapi_document(request.app.state.topics, server=settings.kafka_bootstrap_servers)
        if not identity_of(request).is_admin:
            document.pop("servers", None)  # broker addresses: for admins only (gateway.policy: OPTIONAL)
        return JSONResponse(document)

    app.add_route("/asyncapi.json", asyncapi, include_in_schema=False)
