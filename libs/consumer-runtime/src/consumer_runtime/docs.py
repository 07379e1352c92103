"""``/docs`` from Swagger UI's files shipped in the ``swagger-ui-py`` package: it works without internet
(FastAPI's default page loads them from a CDN, and a blank page is all an offline operator gets). The
licence is served next to them (``/docs/static/LICENSE``)."""

from __future__ import annotations

from pathlib import Path

import swagger_ui
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request

SWAGGER_UI = Path(swagger_ui.__file__).parent / "static"  # Swagger UI 5 dist files and their LICENSE


def install_docs(app: FastAPI, prefix: str = "/docs") -> None:
    """Serve Swagger UI at ``prefix`` from the package's files. Build the app with ``docs_url=None`` and
    ``redoc_url=None`` (ReDoc would load from a CDN too)."""
    app.mount(f"{prefix}/static", StaticFiles(directory=SWAGGER_UI), name="swagger-ui")

    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{prefix}/static/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{prefix}/static/swagger-ui.css",
            swagger_favicon_url=f"{root}{prefix}/static/favicon-32x32.png",
        )

    app.add_route(prefix, docs, include_in_schema=False)
