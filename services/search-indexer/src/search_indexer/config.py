"""Settings of the search indexer: the shared Kafka/HTTP settings plus Elasticsearch and rebuilds."""

from __future__ import annotations

from typing import Any

from consumer_runtime import ServiceSettings
from elastic_transport.client_utils import url_to_node_config
from platform_events import (
    GROUP_SEARCH_INDEXER,
    TOPIC_MESSAGES_CREATED,
    TOPIC_MESSAGES_DELETED,
    TOPIC_MESSAGES_UPDATED,
    TopicSpec,
)
from pydantic import Field, field_validator

#: The topics the index is built from (default names; configured ones via ``Settings.topic``).
MESSAGE_TOPICS = [TOPIC_MESSAGES_CREATED, TOPIC_MESSAGES_UPDATED, TOPIC_MESSAGES_DELETED]


class Settings(ServiceSettings):
    """``KAFKA_*``/``MQ_*``/``HTTP_*``/``LOG_*`` come from :class:`ServiceSettings`; the rest is ours."""

    kafka_consumer_group: str = GROUP_SEARCH_INDEXER
    http_port: int = Field(8103, ge=1, le=65535)

    elasticsearch_url: str = Field("http://127.0.0.1:9200", min_length=1)
    elasticsearch_username: str | None = None
    elasticsearch_password: str | None = None
    elasticsearch_api_key: str | None = None
    elasticsearch_ca_certs: str | None = None
    elasticsearch_request_timeout_s: float = Field(30.0, gt=0)

    # The alias every read and write goes through; physical indexes are named "<alias>-<suffix>".
    search_index_alias: str = Field("messages", pattern=r"^[a-z0-9][a-z0-9_.-]{0,200}$")
    search_index_shards: int = Field(1, ge=1, le=64)
    search_index_replicas: int = Field(1, ge=0, le=10)
    search_index_refresh_interval: str = Field("1s", pattern=r"^(-1|\d+(ms|s|m))$")
    # Bulk items that fail with 429/5xx are retried this many times inside one write (then the batch).
    search_write_max_retries: int = Field(3, ge=0, le=20)
    search_write_retry_backoff_ms: int = Field(100, ge=1)
    # One bulk request carries at most this many bytes: well below Elasticsearch's http.max_content_length
    # (100 MB by default). A 413 answer halves it for the rest of the write (a lone document that still gets
    # 413 is refused for good: DLQ).
    search_bulk_max_bytes: int = Field(10 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)

    rebuild_batch_size: int = Field(1000, ge=1, le=100_000)
    rebuild_timeout_s: float = Field(3600.0, gt=0)
    # After a rebuild swapped the alias, the old index is kept this long (an admin may delete it sooner with
    # DELETE /admin/indices/{name}); 0 = delete it right after the swap.
    rebuild_keep_old_index_s: float = Field(7 * 86400.0, ge=0)
    # /admin/* (rebuild, indexes) requires the gateway's "Authorization: Bearer <INTERNAL_TOKEN>" (the
    # runtime's internal-token guard); unset, it is refused (403). ADMIN_TOKEN is not read here (README.md).

    @field_validator("elasticsearch_url")
    @classmethod
    def _es_url(cls, value: str) -> str:
        """Checked as the client will read it, so a bad value stops the start naming the variable."""
        try:
            url_to_node_config(value, use_default_ports_for_scheme=True)
        except ValueError:
            raise ValueError(f"{value!r} is not a URL like http://127.0.0.1:9200") from None
        return value

    def topic_specs(self) -> list[TopicSpec[Any]]:
        """The three message topics under their configured names."""
        return [self.topic(name) for name in MESSAGE_TOPICS]

    def es_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``AsyncElasticsearch``."""
        kwargs: dict[str, Any] = {
            "hosts": [self.elasticsearch_url],
            "request_timeout": self.elasticsearch_request_timeout_s,
            "retry_on_timeout": True,
            "max_retries": 2,
        }
        if self.elasticsearch_api_key:
            kwargs["api_key"] = self.elasticsearch_api_key
        elif self.elasticsearch_username:
            kwargs["basic_auth"] = (self.elasticsearch_username, self.elasticsearch_password or "")
        if self.elasticsearch_ca_certs:
            kwargs["ca_certs"] = self.elasticsearch_ca_certs
        return kwargs
