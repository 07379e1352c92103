"""Pure logic of the runtime: settings validation, backoff, readiness aggregation."""

from __future__ import annotations

import random

import pytest
from consumer_runtime import ConfigError, KafkaSettings, load_settings, run_checks
from consumer_runtime.retry import backoff_delay
from consumer_runtime.service import ServiceSettings


def test_bad_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_MAX_POLL_RECORDS", "lots")
    with pytest.raises(ConfigError, match="KAFKA_MAX_POLL_RECORDS"):
        load_settings(KafkaSettings)


def test_spec_env_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker-1:9092,broker-2:9092")
    monkeypatch.setenv("KAFKA_CONSUMER_GROUP", "chatbot-issue-consumer-group")
    monkeypatch.setenv("MQ_BATCH_SIZE", "250")
    monkeypatch.setenv("MQ_BATCH_TIMEOUT_MS", "1500")
    monkeypatch.setenv("KAFKA_ENABLED", "false")
    s = load_settings(KafkaSettings)
    assert s.kafka_bootstrap_servers == "broker-1:9092,broker-2:9092"
    assert s.kafka_consumer_group == "chatbot-issue-consumer-group"
    assert (s.mq_batch_size, s.mq_batch_timeout_ms, s.kafka_enabled) == (250, 1500, False)


def test_sasl_needs_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "PLAIN")
    with pytest.raises(ConfigError, match="KAFKA_SASL_USERNAME"):
        load_settings(KafkaSettings)
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "$ConnectionString")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "Endpoint=sb://example/;SharedAccessKey=x")
    kwargs = load_settings(KafkaSettings).client_kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "PLAIN"
    assert kwargs["sasl_plain_username"] == "$ConnectionString"
    assert kwargs["ssl_context"] is not None


def test_oauthbearer_is_refused_with_any_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "OAUTHBEARER")
    for protocol in ("PLAINTEXT", "SSL", "SASL_SSL"):
        monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", protocol)
        with pytest.raises(ConfigError, match="KAFKA_SASL_MECHANISM=OAUTHBEARER"):
            load_settings(KafkaSettings)


def test_unknown_log_level_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "LOUD")
    with pytest.raises(ConfigError, match=r"LOG_LEVEL: .*'LOUD' is not a log level"):
        load_settings(ServiceSettings)
    monkeypatch.setenv("LOG_LEVEL", "debug")
    assert load_settings(ServiceSettings).log_level == "DEBUG"


def test_unknown_security_protocol_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "TLS")
    with pytest.raises(ConfigError, match="KAFKA_SECURITY_PROTOCOL"):
        load_settings(KafkaSettings)


def test_producer_is_durable_by_default() -> None:
    kw = KafkaSettings().producer_kwargs()
    assert kw["acks"] == "all"
    assert kw["enable_idempotence"] is True


def test_backoff_grows_and_is_capped() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(n, initial_s=0.1, max_s=2.0, rng=rng) for n in range(1, 12)]
    for n, d in enumerate(delays, start=1):
        cap = min(2.0, 0.1 * 2 ** (n - 1))
        assert cap / 2 <= d <= cap
    assert max(delays) <= 2.0
    with pytest.raises(ValueError, match="1-based"):
        backoff_delay(0, initial_s=0.1, max_s=1.0)


async def test_run_checks_reports_each_failure() -> None:
    async def ok() -> None:
        return None

    async def down() -> None:
        raise ConnectionError("mysql: connection refused")

    ready, report = await run_checks({"kafka": ok, "mysql": down})
    assert not ready
    assert report == {"kafka": "ok", "mysql": "mysql: connection refused"}
    assert (await run_checks({"kafka": ok}))[0]
