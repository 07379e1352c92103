"""Gateway settings: Kafka (the shared names of docs/contracts.md), upstream URLs, security, limits."""

from __future__ import annotations

from consumer_runtime.service import HttpSettings
from consumer_runtime.settings import KafkaGroupSettings
from pydantic import Field, SecretStr, field_validator

#: The services whose consumers the gateway controls and whose APIs it proxies (name → settings field).
SERVICES: dict[str, str] = {
    "issue-ingestor": "issue_ingestor_url",
    "log-sink": "log_sink_url",
    "search-indexer": "search_indexer_url",
    "notifier": "notifier_url",
}


class GatewaySettings(KafkaGroupSettings, HttpSettings):
    """Everything the gateway reads from the environment (``load_settings`` names a bad variable).

    Kafka: the client settings (it produces and administers) and the group timing of an ``evict_stale``
    offset reset, which joins the group it resets; no consumer settings, as it consumes nothing.
    """

    http_port: int = Field(8000, ge=1, le=65535)

    # ---- security
    admin_token: SecretStr | None = Field(
        None, description="Bearer token of the admin endpoints (k8s Secret). Unset = admin endpoints refuse."
    )
    api_key: SecretStr | None = Field(
        None, description="Optional X-API-Key required by the app-facing publish/query endpoints"
    )
    # The deployment side of the gateway's identities (deploy/k8s base and overlays/cloud, compose set these;
    # deploy/validate.py checks them). Their meaning is the gateway's authentication (docs/security.md).
    gateway_auth: str = Field(
        "required", description="required: every request needs a token; open: `make run` only"
    )
    deploy_environment: str = Field("", description="cloud: GATEWAY_AUTH=open is refused")
    auth_api_keys_file: str | None = Field(
        None, description="JSON file of API key hashes and their scopes (a Secret mounted read-only)"
    )
    oidc_issuer: str | None = Field(None, description="the OIDC provider's issuer (the `iss` of its tokens)")
    oidc_audience: str | None = Field(None, description="the `aud` a token must name")
    oidc_jwks_url: str | None = Field(None, description="where the provider publishes its signing keys")
    cors_allow_origins: str = Field("", description="Comma-separated origins allowed by CORS ('*' = any)")
    max_request_bytes: int = Field(2 * 1024 * 1024, ge=1024, description="Largest accepted request body")

    # ---- upstream services (in k8s: the Service names)
    issue_ingestor_url: str = "http://127.0.0.1:8101"
    log_sink_url: str = "http://127.0.0.1:8102"
    search_indexer_url: str = "http://127.0.0.1:8103"
    notifier_url: str = "http://127.0.0.1:8104"
    upstream_timeout_s: float = Field(10.0, gt=0)
    upstream_max_connections: int = Field(200, ge=1)

    # ---- topics: every topic of platform_events.TOPICS under its configured name (settings.topics())

    # ---- request logging: one wide event per request through libs/wide-logging (Kafka log-events)
    wide_logging_enabled: bool = True

    # ---- background checks (gateway/monitor.py): /readyz answers from their last results
    readiness_interval_s: float = Field(5.0, gt=0, description="How often each dependency is checked")
    readiness_check_timeout_s: float = Field(
        10.0,
        gt=0,
        description="How long a service's /readyz may take (longer than its own 3 s datastore checks, so "
        "the cause of an outage is reported, not a timeout)",
    )
    group_lag_interval_s: float = Field(
        15.0, gt=0, description="How often platform_consumer_group_lag is measured from the broker"
    )

    # ---- dead letters
    kafka_dlq_replay_topic: str = Field(
        "platform.dlq.replays",
        description="Compacted topic of replay markers (key <dlq>/<partition>/<offset>): a letter is "
        "replayed once unless asked again explicitly",
    )
    dlq_retention_ms: int = Field(
        14 * 24 * 3600 * 1000,
        ge=-1,
        description="retention.ms of the <topic>.dlq topics the gateway creates (-1: keep forever)",
    )

    # ---- admin limits
    browse_max_messages: int = Field(500, ge=1, le=10_000)
    dlq_replay_max: int = Field(10_000, ge=1)
    offset_reset_join_timeout_s: float = Field(
        30.0, gt=0, description="evict_stale offset reset: how long to wait for the whole assignment"
    )

    @field_validator("issue_ingestor_url", "log_sink_url", "search_indexer_url", "notifier_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    # ------------------------------------------------------------------ derived
    def service_urls(self) -> dict[str, str]:
        return {name: str(getattr(self, field)) for name, field in SERVICES.items()}

    def cors_origins(self) -> list[str]:
        return [o.strip() for o in self.cors_allow_origins.split(",") if o.strip()]
