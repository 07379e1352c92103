"""Configuration of the adapter (pure)."""

from __future__ import annotations

import pytest
from wide_logging import ConfigError, WideLoggingConfig


def test_defaults_and_platform_variables() -> None:
    c = WideLoggingConfig.from_env({})
    assert (c.mq_enabled, c.log_topic, c.enable_idempotence, c.publish_retries) == (
        True,
        "log-events",
        True,
        3,
    )
    env = {
        "MQ_ENABLED": "false",
        "KAFKA_BOOTSTRAP_SERVERS": "a:9092",
        "KAFKA_BROKER": "seed:9092",
        "KAFKA_LOG_TOPIC": "logs-2",
        "KAFKA_ENABLE_IDEMPOTENCE": "false",
        "MONGO_URL": "mongodb://m:27017",
        "LOG_MONGO_DB": "applogs",
        "WIDE_LOG_QUEUE_SIZE": "7",
        "WIDE_LOG_LINGER_MS": "20",
    }
    c = WideLoggingConfig.from_env(env, service="checkout")
    assert c.mq_enabled is False
    assert c.kafka_bootstrap_servers == "seed:9092"
    assert (c.log_topic, c.enable_idempotence, c.mongo_db, c.queue_size) == ("logs-2", False, "applogs", 7)
    kwargs = c.producer_kwargs()
    assert kwargs["acks"] == "all"
    assert kwargs["enable_idempotence"] is False
    assert kwargs["client_id"] == "wide-logging-checkout"
    assert kwargs["linger_ms"] == 20
    assert WideLoggingConfig.from_env({}).producer_kwargs()["linger_ms"] == 50


@pytest.mark.parametrize(
    ("env", "var"),
    [
        ({"MQ_ENABLED": "maybe"}, "MQ_ENABLED"),
        ({"KAFKA_LOG_TOPIC": "bad topic"}, "KAFKA_LOG_TOPIC"),
        ({"WIDE_LOG_QUEUE_SIZE": "lots"}, "WIDE_LOG_QUEUE_SIZE"),
        ({"WIDE_LOG_QUEUE_SIZE": "0"}, "WIDE_LOG_QUEUE_SIZE"),
        ({"WIDE_LOG_LINGER_MS": "-1"}, "WIDE_LOG_LINGER_MS"),
        ({"WIDE_LOG_LINGER_MS": "5000"}, "WIDE_LOG_LINGER_MS"),
        ({"MONGO_URL": "http://x"}, "MONGO_URL"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_MECHANISM"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], var: str) -> None:
    with pytest.raises(ConfigError, match=var):
        WideLoggingConfig.from_env(env)
