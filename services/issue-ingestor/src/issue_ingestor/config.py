"""Settings of the issue ingestor: the shared Kafka/HTTP settings plus MySQL (docs/contracts.md)."""

from __future__ import annotations

import ssl

from consumer_runtime import ServiceSettings
from platform_events import GROUP_CHATBOT_ISSUES
from pydantic import Field, SecretStr, field_validator

SERVICE_NAME = "issue-ingestor"
DEFAULT_MYSQL_PORT = 3306


def split_host_port(value: str, default_port: int = DEFAULT_MYSQL_PORT) -> tuple[str, int]:
    """``"db:3307"`` → ``("db", 3307)``; ``"db"`` → ``("db", 3306)``; ``"[::1]:3306"`` → ``("::1", 3306)``."""
    text = value.strip()
    if not text:
        raise ValueError("must be host or host:port, got an empty value")
    if text.startswith("["):  # [ipv6]:port
        host, sep, rest = text[1:].partition("]")
        if not sep or not host:
            raise ValueError(f"must be host or host:port, got {value!r}")
        port_text = rest.removeprefix(":") if rest else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        raise ValueError(f"an IPv6 address needs brackets ([::1]:3306), got {value!r}")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"must be host or host:port, got {value!r}")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port must be 1-65535, got {port_text!r}")
    return host, int(port_text)


class Settings(ServiceSettings):
    """Environment of ``python -m issue_ingestor`` (the names of docs/contracts.md)."""

    http_port: int = Field(8101, ge=1, le=65535)
    kafka_consumer_group: str = Field(GROUP_CHATBOT_ISSUES, min_length=1)

    db_host: str = Field("localhost:3306", description="host:port of MySQL")
    db_name: str = Field("chatbot_db", min_length=1, max_length=64)
    db_username: str = Field("chatbot_user", min_length=1)
    db_password: SecretStr = SecretStr("")
    db_pool_size: int = Field(10, ge=1, le=1000)
    db_connect_timeout_s: int = Field(5, ge=1, le=300)
    # A statement that has not answered after this long is treated as a transient failure (the connection is
    # dropped and the batch retried), so a hung network never wedges the consumer.
    db_statement_timeout_s: float = Field(30.0, gt=0)
    db_migrate: bool = Field(True, description="apply pending schema migrations at start")
    # TLS to MySQL (managed servers: Azure Database for MySQL requires it, RDS should use it). DB_SSL_CA: a
    # PEM bundle (mounted from a Secret); unset, the system's CAs. DB_SSL_VERIFY_IDENTITY: the certificate
    # must name DB_HOST's host (off only for servers reached by an address their certificate does not name).
    db_ssl: bool = False
    db_ssl_ca: str | None = None
    db_ssl_verify_identity: bool = True

    @field_validator("db_host")
    @classmethod
    def _check_db_host(cls, value: str) -> str:
        split_host_port(value)
        return value.strip()

    @property
    def mysql_address(self) -> tuple[str, int]:
        return split_host_port(self.db_host)

    def db_ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of the MySQL connections (None: plain TCP). The certificate chain is always
        verified; a missing or unreadable DB_SSL_CA fails here, when the pool is made."""
        if not self.db_ssl:
            if self.db_ssl_ca:
                raise ValueError("DB_SSL_CA is set but DB_SSL is not true: set DB_SSL=true to use TLS")
            return None
        context = ssl.create_default_context(cafile=self.db_ssl_ca or None)
        context.check_hostname = self.db_ssl_verify_identity
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context
