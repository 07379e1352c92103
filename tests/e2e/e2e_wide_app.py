"""A small app that uses the logging adapter the way any platform app would (seed 003), for the e2e tests.

Run: ``python tests/e2e/e2e_wide_app.py`` with HTTP_PORT, WIDE_LOG_SERVICE and the platform's variables
(KAFKA_BROKER, KAFKA_LOG_TOPIC, MONGO_URL, LOG_MONGO_DB, MQ_ENABLED, ...). One wide event per request.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, HTTPException
from wide_logging import WideEventMiddleware, WideLogger, WideLoggingConfig, annotate

logger = WideLogger(WideLoggingConfig.from_env(service=os.environ.get("WIDE_LOG_SERVICE", "e2e-app")))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await logger.start()
    try:
        yield
    finally:
        await logger.close()  # flushes: publish, or fall back to MongoDB


app = FastAPI(lifespan=lifespan)
app.add_middleware(WideEventMiddleware, logger=logger)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/orders/{order_id}")
async def order(order_id: str, user: str = "anonymous") -> dict[str, str]:
    annotate(user_id=user, order_id=order_id, 상품="무선 키보드", cart={"items": 3, "total_krw": 45000})
    if order_id == "missing":
        raise HTTPException(404, "no such order")
    return {"order_id": order_id}


@app.get("/stats")
async def stats() -> dict[str, int]:
    return logger.stats()


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["HTTP_PORT"]), log_level="warning")
