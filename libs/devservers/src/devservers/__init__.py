"""Start, health-check and stop the local stand-in servers (Kafka, MariaDB, MongoDB, Elasticsearch).

    from devservers import ensure, stop, status, Endpoints
    ep = ensure(["kafka", "mysql", "mongo", "elasticsearch"])  # sync, idempotent
    ep.kafka_bootstrap, ep.mysql_host, ep.mysql_port, ep.mongo_url, ep.elasticsearch_url

State lives in `.devdata/` at the repo root (env DEVSERVERS_DATA_DIR overrides); ports come from
DEV_KAFKA_PORT, DEV_MYSQL_PORT, DEV_MONGO_PORT, DEV_ES_PORT. See docs/local-servers.md.
"""

from ._config import SERVER_NAMES, DevServerError, data_root
from ._core import (
    Endpoints,
    PrivateServer,
    ServerStatus,
    ensure,
    service_env,
    start_private,
    status,
    stop,
)
from ._health import Health, check
from ._mysql import (
    drop_mysql_database,
    drop_mysql_database_async,
    ensure_mysql_database,
    ensure_mysql_database_async,
)
from ._process import free_port

__all__ = [
    "SERVER_NAMES",
    "DevServerError",
    "Endpoints",
    "Health",
    "PrivateServer",
    "ServerStatus",
    "check",
    "data_root",
    "drop_mysql_database",
    "drop_mysql_database_async",
    "ensure",
    "ensure_mysql_database",
    "ensure_mysql_database_async",
    "free_port",
    "service_env",
    "start_private",
    "status",
    "stop",
]
