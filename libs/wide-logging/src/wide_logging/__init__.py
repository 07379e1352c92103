"""Wide-event logging adapter: one event per request/job, published to Kafka ``log-events`` with a direct
MongoDB fallback. ``finalize()`` never blocks the request path and no event is dropped silently.

    from wide_logging import WideLogger, WideLoggingConfig, WideEventMiddleware, annotate

    logger = WideLogger(WideLoggingConfig.from_env(service="checkout"))
    app.add_middleware(WideEventMiddleware, logger=logger)
    # lifespan: await logger.start() ... await logger.close()
"""

from wide_logging.config import ConfigError, WideLoggingConfig
from wide_logging.documents import WIDE_EVENTS, InsertOutcome, ensure_indexes, insert_documents, to_document
from wide_logging.logger import Counters, WideLogger
from wide_logging.middleware import WideEventMiddleware, annotate, current_event, wide_event

__all__ = [
    "WIDE_EVENTS",
    "ConfigError",
    "Counters",
    "InsertOutcome",
    "WideEventMiddleware",
    "WideLogger",
    "WideLoggingConfig",
    "annotate",
    "current_event",
    "ensure_indexes",
    "insert_documents",
    "to_document",
    "wide_event",
]
