"""The shared admin-token decision (pure logic)."""

from __future__ import annotations

import pytest
from consumer_runtime.auth import admin_refusal, same_secret
from pydantic import SecretStr


@pytest.mark.parametrize("configured", [None, SecretStr("")])
def test_admin_endpoints_are_never_open(configured: SecretStr | None) -> None:
    refusal = admin_refusal(configured, "Bearer", "anything", service="svc")
    assert refusal == (403, "admin endpoints are disabled: ADMIN_TOKEN is not configured on the svc")


@pytest.mark.parametrize(
    ("scheme", "given", "expected"),
    [
        (None, None, (401, "admin endpoint: send 'Authorization: Bearer <ADMIN_TOKEN>'")),
        ("Basic", "s3cret", (401, "admin endpoint: send 'Authorization: Bearer <ADMIN_TOKEN>'")),
        ("Bearer", "wrong", (401, "admin token is not valid")),
        ("Bearer", "", (401, "admin token is not valid")),
        ("bearer", "s3cret", None),
        ("Bearer", "s3cret", None),
    ],
)
def test_bearer_token_must_match(scheme: str | None, given: str | None, expected: object) -> None:
    assert admin_refusal(SecretStr("s3cret"), scheme, given, service="svc") == expected


def test_same_secret_compares_utf8() -> None:
    assert same_secret("토큰", "토큰")
    assert not same_secret("토큰", "토큰2")
