"""The ceiling of the HTTP benchmark: a bare FastAPI endpoint that answers ``GET /issues/{issue_id}`` with a
fixed JSON body (the one the issue-ingestor answers for the benchmarked id) — no datastore, no middleware,
served by uvicorn with the services' own options (``consumer_runtime.serve``: no access log).

    python -m benchmarks._bare PORT BODY_JSON_FILE        # 127.0.0.1 only
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI


def create_app(body: dict[str, Any]) -> FastAPI:
    app = FastAPI()

    @app.get("/issues/{issue_id}")
    async def get_issue(issue_id: str) -> dict[str, Any]:
        return body

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    port, body_file = int(sys.argv[1]), Path(sys.argv[2])
    app = create_app(json.loads(body_file.read_text()))
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
