"""The route-level guard kept for the routes that declare it (``dependencies=[Admin]``).

Who may call what is decided once, for every route, by :mod:`gateway.policy` (its table and its
middleware, which also establishes ``request.state.identity``). These dependencies only re-check that
decision where a route declares one — defence in depth: an admin route whose policy entry were ever
loosened by mistake still refuses a caller without the ``admin`` scope.
"""

from __future__ import annotations

from fastapi import Depends, Request

from gateway.errors import ApiError
from gateway.identity import ADMIN
from gateway.policy import identity_of


async def require_admin(request: Request) -> None:
    if ADMIN not in identity_of(request).scopes:
        raise ApiError(403, "forbidden", "this needs the scope 'admin'")


Admin = Depends(require_admin)
