"""The gateway's shape, checked so it stays that way: operations (``gateway.ops``) know nothing about HTTP
and their refusals get their status in one place; routes are thin (no handler longer than 25 lines); a seed
path and its ``/api/v1`` twin are one handler, so both document the same parameters."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from fastapi import FastAPI
from gateway.app import create_app
from gateway.console.app import create_console
from gateway.errors import from_ops
from gateway.ops.errors import Conflict, Invalid, NotFound, OpsError, Unavailable
from gateway_testlib import Names, gateway_settings, walk_routes

SRC = Path(__file__).resolve().parents[1] / "src" / "gateway"
MAX_HANDLER_LINES = 25
#: Seed path → its /api/v1 twin (same method), one handler each.
TWINS = {
    ("GET", "/api/kafka/issues"): "/api/v1/issues",
    ("GET", "/api/kafka/issues/{issue_id}"): "/api/v1/issues/{issue_id}",
    ("DELETE", "/api/kafka/issues/{issue_id}"): "/api/v1/issues/{issue_id}",
    ("GET", "/messages/search"): "/api/v1/search/messages",
}


def app() -> FastAPI:
    return create_app(gateway_settings("127.0.0.1:1", Names()))


def test_operations_import_no_web_framework_and_raise_only_domain_errors() -> None:
    modules = sorted((SRC / "ops").glob("*.py"))
    assert {m.stem for m in modules} >= {"topics", "browse", "groups", "dlq", "services", "errors"}
    for module in modules:
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                )
                web = [n for n in names if n.split(".")[0] in {"fastapi", "starlette"}]
                assert not web, f"{module.name} imports {web}: operations must not know about HTTP"
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                raised = ast.unparse(node.exc.func)
                assert raised not in {"ApiError", "HTTPException", "UpstreamUnavailable"}, (
                    f"{module.name}:{node.lineno} raises {raised}: raise a gateway.ops.errors kind instead"
                )


@pytest.mark.parametrize(
    ("error", "status"), [(NotFound, 404), (Conflict, 409), (Invalid, 422), (Unavailable, 503)]
)
def test_each_refusal_kind_has_one_status_and_keeps_its_body(error: type[OpsError], status: int) -> None:
    answer = from_ops(error("x_code", "why", field="f", details=[{"a": 1}], service="kafka"))
    assert answer.status == status
    assert answer.body.model_dump() == {
        "error": "x_code",
        "message": "why",
        "field": "f",
        "details": [{"a": 1}],
        "service": "kafka",
        "request_id": None,
    }


def test_no_route_handler_is_longer_than_25_lines() -> None:
    gateway = app()
    routes = walk_routes(list(gateway.routes)) + walk_routes(list(create_console(gateway).routes))
    lengths = {}
    for path, route in routes:
        lines, _ = inspect.getsourcelines(route.endpoint)
        start = next(i for i, line in enumerate(lines) if line.lstrip().startswith(("def ", "async def ")))
        lengths[f"{sorted(route.methods)} {path} ({route.endpoint.__qualname__})"] = len(lines) - start
    assert len(lengths) >= 60
    too_long = {k: v for k, v in lengths.items() if v > MAX_HANDLER_LINES}
    assert not too_long, (
        f"route handlers longer than {MAX_HANDLER_LINES} lines (move the work to ops): {too_long}"
    )


def test_a_seed_path_and_its_v1_twin_are_one_handler_documenting_the_same_parameters() -> None:
    gateway = app()
    routes = {(m, p): r for p, r in walk_routes(list(gateway.routes)) for m in r.methods}
    paths = gateway.openapi()["paths"]
    for (method, seed), v1 in TWINS.items():
        assert routes[(method, seed)].endpoint is routes[(method, v1)].endpoint, (seed, v1)
        seed_params = paths[seed][method.lower()].get("parameters", [])
        v1_params = paths[v1][method.lower()].get("parameters", [])
        assert seed_params == v1_params, (seed, v1)
    issue_params = {p["name"] for p in paths["/api/kafka/issues"]["get"]["parameters"]}
    assert issue_params >= {"limit", "offset", "processType", "modeType", "isSolved", "from", "to"}
