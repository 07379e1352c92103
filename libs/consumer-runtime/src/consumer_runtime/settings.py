"""Configuration read from the environment, with the variable names of docs/contracts.md.

Every service builds its settings class on :class:`KafkaSettings`; :func:`load_settings` turns a validation
error into one line that names the offending variable, so a bad deployment fails at start, loudly.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from platform_events import TOPICS, TopicSpec, resolve_topics, validate_topic_name
from pydantic import Field, ValidationError, create_model, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]


class ConfigError(SystemExit):
    """Raised at start-up when the environment is invalid; the message names the variable."""


def _topic_name_fields() -> dict[str, Any]:
    """One setting per topic of the registry: named by its ``env_var``, the default name by default."""
    return {
        spec.env_var.lower(): (str, Field(spec.name, description=f"name of the topic {spec.name!r}"))
        for spec in TOPICS.values()
        if spec.env_var
    }


def _legal_topic_name(cls: type, value: str) -> str:
    return validate_topic_name(value.strip())


if TYPE_CHECKING:
    _TopicNames = BaseSettings
else:
    # Generated from platform_events.TOPICS, so the variables (KAFKA_TOPIC_CHATBOT_ISSUES, KAFKA_LOG_TOPIC,
    # ...) are declared once, in the registry; read them through KafkaClientSettings.topic()/topics().
    _TopicNames = create_model(
        "TopicNames",
        __base__=BaseSettings,
        __validators__={"_legal_topic_names": field_validator(*_topic_name_fields())(_legal_topic_name)},
        **_topic_name_fields(),
    )


class KafkaClientSettings(_TopicNames):
    """What every Kafka client of the platform needs: the connection, the producer's durability, topic
    creation and the control topic. The gateway, which produces and administers but consumes nothing, has
    these (plus :class:`KafkaGroupSettings` for the group joins of an offset reset) and no consumer ones."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    kafka_enabled: bool = True
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", min_length=1)
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: str | None = None
    # Idempotent producers need broker support; the local Tansu broker lacks it (docs/local-servers.md).
    kafka_enable_idempotence: bool = True
    kafka_topic_partitions: int = Field(3, ge=1, le=1000)
    kafka_topic_replication: int = Field(1, ge=1, le=10)
    kafka_auto_create_topics: bool = True
    kafka_client_id: str | None = None
    # Operator commands for every replica, kept in a compacted topic (consumer_runtime.control).
    kafka_control_enabled: bool = True
    kafka_control_topic: str = "platform.control"

    @field_validator("kafka_control_topic")
    @classmethod
    def _legal_control_topic(cls, value: str) -> str:
        return validate_topic_name(value)

    @model_validator(mode="after")
    def _distinct_topics(self) -> KafkaClientSettings:
        resolve_topics(self.topic_env())  # names every topic configured twice
        return self

    def topic_env(self) -> dict[str, str]:
        """The configured topic names by their environment variable."""
        return {spec.env_var: getattr(self, spec.env_var.lower()) for spec in TOPICS.values() if spec.env_var}

    def topics(self) -> dict[str, TopicSpec[Any]]:
        """The topic registry keyed by default name, with the configured names applied."""
        return resolve_topics(self.topic_env())

    def topic(self, default_name: str) -> TopicSpec[Any]:
        """A topic of the registry (by default name, e.g. ``TOPIC_LOG_EVENTS``) under its configured name."""
        return self.topics()[default_name]

    @model_validator(mode="after")
    def _check_security(self) -> KafkaClientSettings:
        if self.kafka_sasl_mechanism == "OAUTHBEARER":  # whatever the protocol: never silently ignored
            raise ValueError(
                "KAFKA_SASL_MECHANISM=OAUTHBEARER needs a token provider (AWS MSK IAM); "
                "not supported yet: use SCRAM or PLAIN"
            )
        if self.kafka_security_protocol.startswith("SASL"):
            if self.kafka_sasl_mechanism is None:
                raise ValueError("KAFKA_SASL_MECHANISM is required when KAFKA_SECURITY_PROTOCOL is SASL_*")
            if not (self.kafka_sasl_username and self.kafka_sasl_password):
                raise ValueError("KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required for SASL")
        return self

    def client_kwargs(self) -> dict[str, Any]:
        """Connection keyword arguments common to aiokafka consumers, producers and admin clients."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap_servers,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_client_id:
            kwargs["client_id"] = self.kafka_client_id
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            kwargs["ssl_context"] = ssl.create_default_context(cafile=self.kafka_ssl_cafile)
        if self.kafka_security_protocol.startswith("SASL"):
            kwargs["sasl_mechanism"] = self.kafka_sasl_mechanism
            kwargs["sasl_plain_username"] = self.kafka_sasl_username
            kwargs["sasl_plain_password"] = self.kafka_sasl_password
        return kwargs

    def producer_kwargs(self) -> dict[str, Any]:
        """A durable producer: acks=all, compression, batching, retries (idempotent where supported)."""
        return {
            **self.client_kwargs(),
            "acks": "all",
            "enable_idempotence": self.kafka_enable_idempotence,
            "compression_type": "gzip",
            "linger_ms": 5,
            "max_batch_size": 256 * 1024,
            "request_timeout_ms": 15_000,
            "retry_backoff_ms": 200,
        }


class KafkaGroupSettings(KafkaClientSettings):
    """What a client that joins a consumer group needs: its session and heartbeat timing."""

    kafka_session_timeout_ms: int = Field(10_000, ge=1_000)
    kafka_heartbeat_interval_ms: int = Field(3_000, ge=100)


class KafkaSettings(KafkaGroupSettings):
    """Kafka connection and consumer behaviour shared by every consuming service (env names in
    docs/contracts.md)."""

    kafka_consumer_group: str = Field("", description="consumer group id; each service sets its default")
    kafka_max_poll_records: int = Field(500, ge=1, le=100_000)
    kafka_max_poll_interval_ms: int = Field(300_000, ge=1_000)

    mq_batch_size: int = Field(100, ge=1, le=100_000)
    mq_batch_timeout_ms: int = Field(1000, ge=1, le=600_000)
    # Under backlog a batch grows past MQ_BATCH_SIZE up to this many records / bytes (core.BatchLimits);
    # MQ_MAX_BATCH <= MQ_BATCH_SIZE turns the growth off.
    mq_max_batch: int = Field(1000, ge=1, le=100_000)
    mq_max_batch_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    # Transient sink failures: exponential backoff with jitter between these bounds.
    retry_backoff_initial_ms: int = Field(200, ge=1)
    retry_backoff_max_ms: int = Field(10_000, ge=1)
    # A consumer that cannot make progress for this long reports not-ready.
    consumer_stuck_after_s: float = Field(30.0, gt=0)


S = TypeVar("S", bound=BaseSettings)


def _env_name(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc).upper() or "configuration"


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings from the environment; on error exit with a message naming each bad variable."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{_env_name(err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from None
