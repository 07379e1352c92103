"""Settings: the names and defaults of docs/contracts.md, DB_HOST parsing, failures naming the variable."""

from __future__ import annotations

import pytest
from consumer_runtime import ConfigError, load_settings
from issue_ingestor.config import Settings, split_host_port


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("localhost:3306", ("localhost", 3306)),
        ("db.internal", ("db.internal", 3306)),
        ("10.0.0.5:3307", ("10.0.0.5", 3307)),
        ("[::1]:3308", ("::1", 3308)),
        ("[::1]", ("::1", 3306)),
    ],
)
def test_split_host_port(value: str, expected: tuple[str, int]) -> None:
    assert split_host_port(value) == expected


@pytest.mark.parametrize("value", ["", ":3306", "db:0", "db:70000", "db:x", "::1:3306", "[::1"])
def test_split_host_port_rejects(value: str) -> None:
    with pytest.raises(ValueError, match=r"host|port|IPv6"):
        split_host_port(value)


def test_defaults_follow_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KAFKA_CONSUMER_GROUP", "KAFKA_TOPIC_CHATBOT_ISSUES", "HTTP_PORT", "DB_HOST", "DB_POOL_SIZE"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings(Settings)
    assert s.kafka_consumer_group == "chatbot-issue-consumer-group"
    assert s.kafka_topic_chatbot_issues == "chatbot-issue-events"
    assert s.http_port == 8101
    assert s.mysql_address == ("localhost", 3306)
    assert s.db_pool_size == 10


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_HOST", "mysql.prod:3310")
    monkeypatch.setenv("DB_NAME", "chatbot_db")
    monkeypatch.setenv("DB_USERNAME", "chatbot_user")
    monkeypatch.setenv("DB_PASSWORD", "s3cret")
    monkeypatch.setenv("DB_POOL_SIZE", "7")
    monkeypatch.setenv("KAFKA_TOPIC_CHATBOT_ISSUES", "factory.issues")
    monkeypatch.setenv("KAFKA_CONSUMER_GROUP", "g2")
    s = load_settings(Settings)
    assert s.mysql_address == ("mysql.prod", 3310)
    assert (s.db_name, s.db_username, s.db_password.get_secret_value()) == (
        "chatbot_db",
        "chatbot_user",
        "s3cret",
    )
    assert s.db_pool_size == 7
    assert s.kafka_topic_chatbot_issues == "factory.issues"
    assert s.kafka_consumer_group == "g2"
    assert "s3cret" not in repr(s)


@pytest.mark.parametrize(
    ("var", "value"),
    [("DB_HOST", "db:notaport"), ("DB_POOL_SIZE", "0"), ("KAFKA_TOPIC_CHATBOT_ISSUES", "bad topic!")],
)
def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=var):
        load_settings(Settings)
