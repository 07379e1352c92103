"""Pure logic of the gateway (no servers): value rendering, assignment decoding, settings, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from consumer_runtime import ConfigError, load_settings
from consumer_runtime.auth import same_secret
from gateway.config import GatewaySettings
from gateway.errors import ApiError, _field
from gateway.kafka import decode_assignment, render_key, render_value
from gateway.upstream import UpstreamResponse, raise_for_upstream


def test_render_value_json_text_base64_null() -> None:
    assert render_value('{"a": "한글"}'.encode()) == ({"a": "한글"}, "json")
    assert render_value("그냥 텍스트".encode()) == ("그냥 텍스트", "text")
    assert render_value(b"\xff\x00") == ("/wA=", "base64")
    assert render_value(None) == (None, "null")
    assert render_key(b"\xff") == "base64:/w=="
    assert render_key(None) is None


def test_decode_assignment() -> None:
    raw = ConsumerProtocolMemberAssignment(0, [("t", [2, 0])], b"").encode()
    assert decode_assignment(raw) == [{"topic": "t", "partitions": [0, 2]}]
    assert decode_assignment(b"") == []  # the local broker sends none
    assert decode_assignment(b"\x00garbage") == []


def test_settings_fail_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISSUE_INGESTOR_URL", "ftp://x")
    with pytest.raises(ConfigError, match="ISSUE_INGESTOR_URL"):
        load_settings(GatewaySettings)
    monkeypatch.setenv("ISSUE_INGESTOR_URL", "http://issue-ingestor:8101/")
    monkeypatch.setenv("KAFKA_TOPIC_CHATBOT_ISSUES", "bad topic")
    with pytest.raises(ConfigError, match="KAFKA_TOPIC_CHATBOT_ISSUES"):
        load_settings(GatewaySettings)
    monkeypatch.setenv("KAFKA_TOPIC_CHATBOT_ISSUES", "factory-issues")
    settings = load_settings(GatewaySettings)
    assert settings.issue_ingestor_url == "http://issue-ingestor:8101"
    assert settings.topics()["chatbot-issue-events"].name == "factory-issues"
    assert settings.http_port == 8000
    assert settings.admin_token is None


def test_cors_origins_parsing() -> None:
    assert GatewaySettings(cors_allow_origins=" https://a , https://b,").cors_origins() == [
        "https://a",
        "https://b",
    ]


def test_constant_time_compare() -> None:
    assert same_secret("토큰", "토큰")
    assert not same_secret("token", "token2")


def test_field_paths() -> None:
    assert _field(("body", "payload", "mentions", 0)) == "payload.mentions[0]"
    assert _field(("query", "limit")) == "limit"
    assert _field(("body",)) == "body"


@pytest.mark.parametrize(
    ("status", "expected_status", "error"),
    [
        (404, 404, "not_found"),
        (422, 422, "validation_error"),
        (500, 502, "upstream_error"),
        (503, 503, "upstream_unavailable"),
    ],
)
def test_upstream_errors_are_mapped(status: int, expected_status: int, error: str) -> None:
    response = UpstreamResponse(status, [], json.dumps({"detail": "issue 'X' not found"}).encode())
    with pytest.raises(ApiError) as info:
        raise_for_upstream("issue-ingestor", response)
    assert info.value.status == expected_status
    assert info.value.body.error == error
    assert info.value.body.service == "issue-ingestor"
    # a 4xx is about the request: its message is passed on; a 5xx's text is logged, never answered
    assert ("issue 'X' not found" in info.value.body.message) is (status < 500)
    assert (info.value.body.request_id is not None) is (status >= 500)


def test_a_bad_variable_ends_the_start_with_one_line_and_no_traceback() -> None:
    """``python -m gateway`` with LOG_LEVEL=LOUD: exit 1 and one message naming the variable."""
    env = {**os.environ, "LOG_LEVEL": "LOUD", "KAFKA_ENABLED": "false"}
    done = subprocess.run(
        [sys.executable, "-m", "gateway"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "LOG_LEVEL: Value error, 'LOUD' is not a log level" in done.stderr


def test_openapi_describes_every_parameter_and_admin_operations_need_the_token() -> None:
    from gateway.app import create_app

    schema = create_app(GatewaySettings(kafka_enabled=False, wide_logging_enabled=False)).openapi()
    undescribed, either = [], []
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            undescribed += [
                (method, path, p["name"]) for p in operation.get("parameters", []) if not p.get("description")
            ]
            security = operation.get("security", [])
            if len(security) > 1:
                either.append((method, path, security))  # alternatives would mean "any one suffices"
    assert undescribed == []
    assert either == []
    rebuild = schema["paths"]["/api/v1/search/rebuild"]["post"]
    assert rebuild["security"] == [{"bearer": ["admin"]}]
    assert "401" in rebuild["responses"]


def test_liveness_and_metrics_document_no_error_they_never_send() -> None:
    """``/healthz`` and ``/metrics`` are answered by the gateway's own process: no 503 body is promised for
    them; every operation that reaches Kafka or a service documents its 503."""
    from gateway.app import create_app

    schema = create_app(GatewaySettings(kafka_enabled=False, wide_logging_enabled=False)).openapi()
    for path in ("/healthz", "/metrics"):
        assert "503" not in schema["paths"][path]["get"]["responses"], path
    assert "503" in schema["paths"]["/readyz"]["get"]["responses"]
    assert "503" in schema["paths"]["/api/v1/issues"]["get"]["responses"]
