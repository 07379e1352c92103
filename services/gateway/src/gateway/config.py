"""Gateway settings: Kafka (the shared names of docs/contracts.md), upstream URLs, security, limits."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from consumer_runtime.service import HttpSettings
from consumer_runtime.settings import KafkaGroupSettings
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The services whose consumers the gateway controls and whose APIs it proxies (name → settings field).
SERVICES: dict[str, str] = {
    "issue-ingestor": "issue_ingestor_url",
    "log-sink": "log_sink_url",
    "search-indexer": "search_indexer_url",
    "notifier": "notifier_url",
}


#: JWT signature algorithms OIDC_ALGORITHMS may name: asymmetric only (no "none", no HS*: no key confusion).
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class GatewaySettings(KafkaGroupSettings, HttpSettings):
    """Everything the gateway reads from the environment (``load_settings`` names a bad variable).

    Kafka: the client settings (it produces and administers) and the group timing of an ``evict_stale``
    offset reset, which joins the group it resets; no consumer settings, as it consumes nothing.
    """

    http_port: int = Field(8000, ge=1, le=65535)

    # ---- security (docs/security.md; gateway/identity.py, gateway/policy.py)
    deploy_environment: str = Field(
        "", description="Where this runs (DEPLOY_ENVIRONMENT); 'cloud' refuses GATEWAY_AUTH=open at start"
    )
    gateway_auth: Literal["required", "open"] = Field(
        "required",
        description="required: every non-public route needs a bearer token; open (make run only): a call "
        "without a token acts as an anonymous user with the data-plane scopes (never admin)",
    )
    admin_token: SecretStr | None = Field(
        None, description="Bearer token acting as an identity with scope admin (k8s Secret; the console)"
    )
    api_key: SecretStr | None = Field(
        None,
        description="Deprecated: one shared X-API-Key acting as an identity with the data-plane scopes "
        "(subject 'api-key'); use AUTH_API_KEYS_FILE",
    )
    auth_api_keys_file: Path | None = Field(
        None, description="JSON file of API keys as SHA-256 hashes with their subject and scopes (a Secret)"
    )
    oidc_issuer: str | None = Field(None, description="The OIDC provider's issuer (the tokens' iss)")
    oidc_audience: str | None = Field(None, description="The audience (aud) tokens must be issued for")
    oidc_jwks_url: str | None = Field(None, description="The provider's JWKS URL (https)")
    oidc_algorithms: str = Field("RS256,ES256", description="Accepted JWT signature algorithms (asymmetric)")
    oidc_leeway_s: float = Field(30.0, ge=0, le=300, description="Clock skew allowed on exp/nbf/iat")
    oidc_jwks_min_refresh_s: float = Field(
        30.0, ge=0, description="An unknown kid refetches the JWKS at most this often (key rotation)"
    )
    oidc_jwks_cache_s: float = Field(3600.0, gt=0, description="Cached JWKS is refetched after this long")
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

    # ---- abuse limits and the console's sessions (docs/security.md#console-sessions-and-abuse-limits)
    trusted_proxies: str = Field(
        "",
        description="Comma-separated IPs/CIDRs of the proxies (the Ingress controller) whose "
        "X-Forwarded-Proto / X-Forwarded-For the gateway believes; empty: none",
    )
    publish_rate_limit: str = Field(
        "100/second;3000/minute",
        description="Requests per identity (token subject, else client IP) to the publishing routes, "
        "e.g. '120/minute', '10/second;1000/hour'; over it: 429 with Retry-After",
    )
    stream_max_per_user: int = Field(
        5, ge=1, description="Live (SSE) streams one identity (token subject, else client IP) may hold open"
    )
    stream_max_total: int = Field(
        500, ge=1, description="Live streams open through one gateway process (their own connection pool)"
    )
    stream_retry_after_s: int = Field(10, ge=1, description="Retry-After of a refused stream (429)")
    console_session_ttl_s: int = Field(
        8 * 3600, ge=60, description="How long a console login lasts (the session expires server-side)"
    )
    console_max_sessions: int = Field(
        1000, ge=1, description="Console sessions kept per process; the oldest is dropped beyond it"
    )
    console_login_rate_limit: str = Field(
        "10/minute", description="Console login attempts per client address; over it: 429 with Retry-After"
    )

    @field_validator("publish_rate_limit", "console_login_rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a rate such as '120/minute' or '10/second;1000/hour'"
            ) from None
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        for item in (v.strip() for v in value.split(",")):
            if item:
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(f"{item!r} is not an IP address or CIDR") from None
        return value

    @field_validator("gateway_auth")
    @classmethod
    def _not_open_in_cloud(cls, value: str, info: ValidationInfo) -> str:
        where = str(info.data.get("deploy_environment") or "").strip().lower()
        if value == "open" and where == "cloud":
            raise ValueError("GATEWAY_AUTH=open is refused when DEPLOY_ENVIRONMENT=cloud (use required)")
        return value

    @field_validator("oidc_algorithms")
    @classmethod
    def _asymmetric_algorithms(cls, value: str) -> str:
        names = [a.strip() for a in value.split(",") if a.strip()]
        bad = [a for a in names if a not in ASYMMETRIC_ALGORITHMS]
        if not names or bad:
            raise ValueError(
                f"{', '.join(bad) or 'empty'}: accepted are {', '.join(sorted(ASYMMETRIC_ALGORITHMS))} "
                "(never none, never an HMAC algorithm)"
            )
        return ",".join(names)

    @field_validator("oidc_jwks_url")
    @classmethod
    def _jwks_https(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        local = parts.hostname in ("127.0.0.1", "localhost", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and local):
            raise ValueError(f"must be an https URL (http only on localhost), got {value!r}")
        return value.strip()

    @model_validator(mode="after")
    def _oidc_complete(self) -> GatewaySettings:
        given = {"OIDC_ISSUER": self.oidc_issuer, "OIDC_AUDIENCE": self.oidc_audience,
                 "OIDC_JWKS_URL": self.oidc_jwks_url}  # fmt: skip
        if any(given.values()) and not all(given.values()):
            missing = ", ".join(k for k, v in given.items() if not v)
            raise ValueError(f"OIDC_ISSUER, OIDC_AUDIENCE and OIDC_JWKS_URL go together: {missing} missing")
        return self

    @field_validator("issue_ingestor_url", "log_sink_url", "search_indexer_url", "notifier_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    # ------------------------------------------------------------------ derived
    def service_urls(self) -> dict[str, str]:
        return {name: str(getattr(self, field)) for name, field in SERVICES.items()}

    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer)

    def algorithms(self) -> list[str]:
        return self.oidc_algorithms.split(",")

    def cors_origins(self) -> list[str]:
        return [o.strip() for o in self.cors_allow_origins.split(",") if o.strip()]

    def trusted_networks(self) -> list[IPNetwork]:
        return [
            ipaddress.ip_network(v.strip(), strict=False)
            for v in self.trusted_proxies.split(",")
            if v.strip()
        ]
