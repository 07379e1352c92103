"""Helpers shared by the issue-ingestor tests (imported by them; conftest puts this folder on sys.path)."""

from __future__ import annotations

import json
from typing import Any

from consumer_runtime.testing import KafkaNames
from issue_ingestor.config import Settings
from issue_ingestor.sink import IssueSink
from issue_ingestor.store import IssueStore

ISSUE_DB_PASSWORD = "ii-test-pw"
INTERNAL_TOKEN = "ii-test-internal-token"
#: what the gateway sends: the service's state-changing endpoints need it
INTERNAL = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}


class MysqlDb:
    def __init__(self, host: str, port: int, name: str, user: str) -> None:
        self.host, self.port, self.name, self.user = host, port, name, user

    def settings(self, names: KafkaNames | None = None, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "db_host": f"{self.host}:{self.port}",
            "db_name": self.name,
            "db_username": self.user,
            "db_password": ISSUE_DB_PASSWORD,
            "db_pool_size": 4,
            "log_json": False,
            "kafka_enable_idempotence": False,
            "kafka_session_timeout_ms": 6000,
            "kafka_heartbeat_interval_ms": 1000,
            "mq_batch_timeout_ms": 100,
            "retry_backoff_initial_ms": 50,
            "retry_backoff_max_ms": 500,
            "kafka_control_enabled": False,
            "internal_token": INTERNAL_TOKEN,
        }
        if names is not None:
            values["kafka_topic_chatbot_issues"] = names.topic
            values["kafka_consumer_group"] = names.group
        values.update(overrides)
        return Settings(**values)


async def wipe(store: IssueStore) -> None:
    async with store.connection() as conn, conn.cursor() as cur:
        await cur.execute("DELETE FROM ChatbotSession")
        await cur.execute("DELETE FROM ChatbotIssue")
        await conn.commit()


async def fetch(store: IssueStore, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    async with store.connection() as conn, conn.cursor() as cur:
        await cur.execute(sql, args)
        rows = list(await cur.fetchall())
        await conn.commit()
    return rows


def issue_json(issue: Any, /, **fields: Any) -> bytes:
    body: dict[str, Any] = {
        "issue": issue,
        "processType": "장애접수",
        "modeType": "프레스",
        "modeLogId": f"{issue}_LOG",
        "description": "100톤 프레스 유압 이상",
        "isSolved": False,
        "timestamp": "2025-08-08T17:05:37.123Z",
    }
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not ...}, ensure_ascii=False).encode()


class RunningService:
    """The whole app (lifespan: store + consumer) in-process, with an HTTP client on it."""

    def __init__(self, settings: Settings, sink: IssueSink | None = None) -> None:
        import httpx
        from asgi_lifespan import LifespanManager
        from issue_ingestor.app import create_app

        self.app = create_app(settings, sink=sink)
        self.store: IssueStore = self.app.state.store
        self.runner = self.app.state.runner
        self.sink: IssueSink = self.runner.sink
        self._manager = LifespanManager(self.app, startup_timeout=30, shutdown_timeout=40)
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://ingestor", headers=INTERNAL
        )

    async def __aenter__(self) -> RunningService:
        await self._manager.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.http.aclose()
        await self._manager.__aexit__(*exc)

    async def count(self) -> int:
        rows = await fetch(self.store, "SELECT COUNT(*) FROM ChatbotIssue")
        return int(rows[0][0])


class TcpProxy:
    """A TCP forwarder on 127.0.0.1 in front of MySQL that a test can cut (the database "goes down":
    live connections are reset, new ones refused) and restore on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: Any = None
        self._writers: set[Any] = set()

    async def start(self) -> TcpProxy:
        import asyncio

        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def restore(self) -> None:
        await self.start()

    async def _handle(self, reader: Any, writer: Any) -> None:
        import asyncio

        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: Any, dst: Any) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.discard(writer)
        self._writers.discard(up_writer)
