"""Configuration of the logging adapter, read from the same environment variables as the platform."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from platform_events import MAX_WIDE_EVENT_BYTES, TOPIC_LOG_EVENTS, validate_topic_name

__all__ = ["ConfigError", "WideLoggingConfig"]

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
_PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class ConfigError(ValueError):
    """A bad setting; the message names the environment variable."""


@dataclass(frozen=True, slots=True)
class WideLoggingConfig:
    """Everything the adapter needs. Build it with :meth:`from_env` or directly (tests, embedding apps).

    ``MQ_ENABLED=false`` stores events straight into MongoDB (no Kafka at all).
    """

    service: str = "app"
    mq_enabled: bool = True
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    log_topic: str = TOPIC_LOG_EVENTS
    enable_idempotence: bool = True
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    mongo_url: str = "mongodb://127.0.0.1:27017"
    mongo_db: str = "logs"
    #: Events waiting to be published; when full, new events go straight to the MongoDB fallback.
    queue_size: int = 10_000
    #: Events waiting for a direct MongoDB write; only when this is full too is an event dropped (counted
    #: and written to the process log in full, so it is never lost silently).
    fallback_queue_size: int = 50_000
    #: Largest number of events handed to the producer / to one insert_many at a time.
    batch_size: int = 500
    #: Retries after a failed publish (the issue asks for 3), with exponential backoff from this delay.
    publish_retries: int = 3
    retry_backoff_ms: int = 100
    #: How long the producer waits to put more events into one produce request. At a few requests per
    #: second every event would otherwise be a request of its own (~0.8 ms of CPU each against ~0.3 ms at
    #: 50 ms, measured in the gateway's process); events reach Kafka at most this much later.
    linger_ms: int = 50
    #: How long one publish attempt may take before it counts as failed.
    publish_timeout_ms: int = 5_000
    #: After a batch failed all its retries, skip Kafka for this long (events go to MongoDB directly).
    breaker_open_ms: int = 5_000
    #: How long ``close()`` may take to flush what is pending.
    close_timeout_s: float = 10.0
    #: Every direct MongoDB operation ends within this long (connect, socket, maxTimeMS): then it is retried.
    mongo_timeout_ms: int = 10_000
    #: Largest encoded event (bytes); a bigger one is cut to its core fields plus ``truncated: true``.
    #: At most the wide event limit (256 KiB), well below Kafka's default 1 MB message limit.
    max_event_bytes: int = MAX_WIDE_EVENT_BYTES

    def __post_init__(self) -> None:
        if not self.service.strip():
            raise ConfigError("WIDE_LOG_SERVICE: must not be blank")
        try:
            validate_topic_name(self.log_topic)
        except ValueError as exc:
            raise ConfigError(f"KAFKA_LOG_TOPIC: {exc}") from None
        if self.security_protocol not in _PROTOCOLS:
            raise ConfigError(f"KAFKA_SECURITY_PROTOCOL: must be one of {', '.join(_PROTOCOLS)}")
        if self.security_protocol.startswith("SASL"):
            if self.sasl_mechanism not in _MECHANISMS:
                raise ConfigError(f"KAFKA_SASL_MECHANISM: must be one of {', '.join(_MECHANISMS)} for SASL")
            if not (self.sasl_username and self.sasl_password):
                raise ConfigError("KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required for SASL")
        for name, value in (
            ("WIDE_LOG_QUEUE_SIZE", self.queue_size),
            ("WIDE_LOG_FALLBACK_QUEUE_SIZE", self.fallback_queue_size),
            ("WIDE_LOG_BATCH_SIZE", self.batch_size),
            ("WIDE_LOG_PUBLISH_TIMEOUT_MS", self.publish_timeout_ms),
            ("MONGO_TIMEOUT_MS", self.mongo_timeout_ms),
        ):
            if value < 1:
                raise ConfigError(f"{name}: must be >= 1, got {value}")
        if not 0 <= self.linger_ms <= 1_000:
            raise ConfigError(f"WIDE_LOG_LINGER_MS: must be between 0 and 1000, got {self.linger_ms}")
        if self.publish_retries < 0 or self.retry_backoff_ms < 0 or self.breaker_open_ms < 0:
            raise ConfigError("WIDE_LOG_PUBLISH_RETRIES / _RETRY_BACKOFF_MS / _BREAKER_OPEN_MS must be >= 0")
        if not 1024 <= self.max_event_bytes <= MAX_WIDE_EVENT_BYTES:
            raise ConfigError(
                f"WIDE_LOG_MAX_EVENT_BYTES: must be between 1024 and {MAX_WIDE_EVENT_BYTES}, "
                f"got {self.max_event_bytes}"
            )
        if not self.mongo_url.startswith(("mongodb://", "mongodb+srv://")):
            raise ConfigError("MONGO_URL: must start with mongodb:// or mongodb+srv://")
        if not self.mongo_db.strip():
            raise ConfigError("LOG_MONGO_DB: must not be blank")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> WideLoggingConfig:
        """Read the platform's variables (``MQ_ENABLED``, ``KAFKA_BROKER`` or ``KAFKA_BOOTSTRAP_SERVERS``,
        ``KAFKA_LOG_TOPIC``, ``KAFKA_ENABLE_IDEMPOTENCE``, ``KAFKA_SECURITY_PROTOCOL``/``KAFKA_SASL_*``,
        ``MONGO_URL``, ``LOG_MONGO_DB``) and the adapter's own ``WIDE_LOG_*`` tuning knobs."""
        e = os.environ if env is None else env
        values: dict[str, Any] = {}

        def text(var: str, key: str) -> None:
            raw = e.get(var, "").strip()
            if raw:
                values[key] = raw

        def flag(var: str, key: str) -> None:
            raw = e.get(var, "").strip().lower()
            if not raw:
                return
            if raw not in _TRUE | _FALSE:
                raise ConfigError(f"{var}: expected true or false, got {e[var]!r}")
            values[key] = raw in _TRUE

        def number(var: str, key: str, kind: type[int] | type[float] = int) -> None:
            raw = e.get(var, "").strip()
            if not raw:
                return
            try:
                values[key] = kind(raw)
            except ValueError:
                raise ConfigError(f"{var}: expected a number, got {raw!r}") from None

        text("WIDE_LOG_SERVICE", "service")
        flag("MQ_ENABLED", "mq_enabled")
        text("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers")
        text("KAFKA_BROKER", "kafka_bootstrap_servers")  # the seed's name wins when both are set
        text("KAFKA_LOG_TOPIC", "log_topic")
        flag("KAFKA_ENABLE_IDEMPOTENCE", "enable_idempotence")
        text("KAFKA_SECURITY_PROTOCOL", "security_protocol")
        text("KAFKA_SASL_MECHANISM", "sasl_mechanism")
        text("KAFKA_SASL_USERNAME", "sasl_username")
        text("KAFKA_SASL_PASSWORD", "sasl_password")
        text("KAFKA_SSL_CAFILE", "ssl_cafile")
        text("MONGO_URL", "mongo_url")
        text("LOG_MONGO_DB", "mongo_db")
        number("WIDE_LOG_QUEUE_SIZE", "queue_size")
        number("WIDE_LOG_FALLBACK_QUEUE_SIZE", "fallback_queue_size")
        number("WIDE_LOG_BATCH_SIZE", "batch_size")
        number("WIDE_LOG_PUBLISH_RETRIES", "publish_retries")
        number("WIDE_LOG_RETRY_BACKOFF_MS", "retry_backoff_ms")
        number("WIDE_LOG_PUBLISH_TIMEOUT_MS", "publish_timeout_ms")
        number("WIDE_LOG_LINGER_MS", "linger_ms")
        number("WIDE_LOG_BREAKER_OPEN_MS", "breaker_open_ms")
        number("WIDE_LOG_CLOSE_TIMEOUT_S", "close_timeout_s", float)
        number("WIDE_LOG_MAX_EVENT_BYTES", "max_event_bytes")
        number("MONGO_TIMEOUT_MS", "mongo_timeout_ms")
        values.update(overrides)
        return cls(**values)

    def with_(self, **changes: Any) -> WideLoggingConfig:
        return replace(self, **changes)

    def producer_kwargs(self) -> dict[str, Any]:
        """aiokafka producer options: acks=all, idempotent where the broker supports it."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap_servers,
            "security_protocol": self.security_protocol,
            "acks": "all",
            "enable_idempotence": self.enable_idempotence,
            "linger_ms": self.linger_ms,
            "request_timeout_ms": self.publish_timeout_ms,
            "retry_backoff_ms": 100,
            "client_id": f"wide-logging-{self.service}",
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            kwargs["ssl_context"] = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.security_protocol.startswith("SASL"):
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        return kwargs
