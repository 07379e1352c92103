"""log-sink settings: the shared Kafka/HTTP settings plus MongoDB and retention (env names in README)."""

from __future__ import annotations

from typing import Self

from consumer_runtime import ServiceSettings
from platform_events import GROUP_LOGS
from pydantic import Field, field_validator, model_validator


class Settings(ServiceSettings):
    kafka_consumer_group: str = GROUP_LOGS
    #: The seed's name for the bootstrap servers; used when KAFKA_BOOTSTRAP_SERVERS is not set.
    kafka_broker: str | None = None
    http_port: int = Field(8102, ge=1, le=65535)

    mongo_url: str = "mongodb://127.0.0.1:27017"
    log_mongo_db: str = Field("logs", min_length=1, max_length=63, pattern=r"^[A-Za-z0-9_-]+$")
    #: Every MongoDB operation ends within this long (connect, socket reads, server-side maxTimeMS): a hung
    #: MongoDB becomes a retried batch, never a stuck consumer or request.
    mongo_timeout_ms: int = Field(10_000, ge=100, le=600_000)
    #: Documents expire this many days after their event ``timestamp`` (TTL index); 0 keeps them forever.
    log_retention_days: float = Field(30, ge=0, le=36_500)
    #: Upper bound of ``limit`` on GET /logs.
    log_query_max_limit: int = Field(1000, ge=1, le=10_000)

    @field_validator("mongo_url")
    @classmethod
    def _mongo_url(cls, value: str) -> str:
        if not value.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("must start with mongodb:// or mongodb+srv://")
        return value

    @model_validator(mode="after")
    def _seed_broker_name(self) -> Self:
        if self.kafka_broker and "kafka_bootstrap_servers" not in self.model_fields_set:
            self.kafka_bootstrap_servers = self.kafka_broker
        return self

    @property
    def retention_s(self) -> int | None:
        return int(self.log_retention_days * 86_400) or None
