"""OIDC bearer tokens against a JWKS generated here and served by a real HTTP server on 127.0.0.1.

Each refusal case is a token that differs from a valid one in exactly one respect; all are 401, the valid
ones pass. Key rotation: a token with a new kid makes the gateway refetch the JWKS (not more often than
OIDC_JWKS_MIN_REFRESH_S, so made-up kids cannot make it hammer the provider).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from gateway.app import create_app
from gateway.identity import DATA_PLANE_SCOPES
from gateway_testlib import Names, Served, gateway_settings, serve

ISSUER = "https://idp.test/realms/platform"
AUDIENCE = "platform-gateway"


@dataclass
class Provider:
    """An OIDC provider's signing side: keys by kid, the JWKS it publishes, and how often it was asked."""

    keys: dict[str, Any] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)
    fetches: int = 0

    def add_rsa(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def add_ec(self, kid: str) -> None:
        self.keys[kid] = ec.generate_private_key(ec.SECP256R1())

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid in self.published:
            key = self.keys[kid]
            if isinstance(key, rsa.RSAPrivateKey):
                jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
                jwk.update(alg="RS256")
            else:
                jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
                jwk.update(alg="ES256")
            out.append({**jwk, "kid": kid, "use": "sig"})
        return {"keys": out}

    def token(
        self, kid: str, *, alg: str = "RS256", headers: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "user_001",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "scope": "logs:read messages:read",
            **claims,
        }
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, self.keys[kid], algorithm=alg, headers={"kid": kid, **(headers or {})})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], payload: dict[str, Any], sign: Any = None) -> str:
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())
    return head + "." + (b64(sign(head.encode())) if sign else "")


def jwks_app(provider: Provider) -> FastAPI:
    app = FastAPI()

    @app.get("/jwks")
    async def jwks() -> dict[str, Any]:
        provider.fetches += 1
        return provider.jwks()

    return app


@pytest.fixture
async def provider() -> AsyncIterator[tuple[Provider, Served]]:
    p = Provider()
    p.add_rsa("rsa-1")
    p.add_ec("ec-1")
    p.add_rsa("unpublished")
    p.published = ["rsa-1", "ec-1"]
    served = await serve(jwks_app(p))
    try:
        yield p, served
    finally:
        await served.stop()


@contextlib.asynccontextmanager
async def gateway(idp: Served, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = gateway_settings(
        "127.0.0.1:1",
        Names(),
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        oidc_jwks_url=f"{idp.url}/jwks",
        **overrides,
    )
    app = create_app(settings)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            yield client
    finally:
        await app.state.auth.close()


async def who(client: httpx.AsyncClient, token: str) -> httpx.Response:
    """/asyncapi.json identifies a presented token (bad: 401) and shows the servers to admins only."""
    return await client.get("/asyncapi.json", headers={"Authorization": f"Bearer {token}"})


async def test_valid_tokens_pass_with_their_subject_and_scopes(provider: tuple[Provider, Served]) -> None:
    p, idp = provider
    async with gateway(idp) as client:
        for kid, alg in (("rsa-1", "RS256"), ("ec-1", "ES256")):
            user = await who(client, p.token(kid, alg=alg))
            assert user.status_code == 200, user.text
            assert "servers" not in user.json()
        admin = await who(client, p.token("rsa-1", scope="admin"))
        assert admin.status_code == 200
        assert "servers" in admin.json()
        # scp as a list (Entra ID / Okta style)
        listed = await who(client, p.token("rsa-1", scope=None, scp=["admin"]))
        assert "servers" in listed.json()
        # the scope decides a protected route: logs:read passes the decision, admin routes refuse it
        token = {"Authorization": f"Bearer {p.token('rsa-1', scope='logs:read')}"}
        assert (await client.get("/api/v1/topics", headers=token)).status_code == 403
        assert (await client.get("/api/v1/issues", headers=token)).status_code == 403
    assert p.fetches == 1, "the JWKS is fetched once and cached"


async def test_every_defective_token_is_401(provider: tuple[Provider, Served]) -> None:
    p, idp = provider
    valid = p.token("rsa-1")
    header = jwt.get_unverified_header(valid)
    payload = jwt.decode(valid, options={"verify_signature": False})
    public_pem = (
        p.keys["rsa-1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    head, body, signature = valid.split(".")
    now = int(time.time())
    cases = {
        "expired": p.token("rsa-1", exp=now - 120, iat=now - 600, nbf=now - 600),  # beyond the 30 s leeway
        "not yet valid": p.token("rsa-1", nbf=now + 120),
        "no expiry": p.token("rsa-1", exp=None),
        "wrong issuer": p.token("rsa-1", iss="https://evil.test/"),
        "wrong audience": p.token("rsa-1", aud="another-api"),
        "no subject": p.token("rsa-1", sub=None),
        "alg none": forged({**header, "alg": "none"}, payload),
        "alg none, signature kept": forged({**header, "alg": "none"}, payload)[:-1] + "." + signature,
        "HS256 signed with the RSA public key": forged(
            {**header, "alg": "HS256"},
            payload,
            lambda data: hmac.new(public_pem, data, hashlib.sha256).digest(),
        ),
        "RS256 header on the EC key": forged({"alg": "RS256", "kid": "ec-1"}, payload)
        + p.token("ec-1", alg="ES256").split(".")[2],
        "unknown kid": p.token("unpublished"),
        "kid of one key, signed by another": p.token("unpublished", headers={"kid": "rsa-1"}),
        "tampered payload": head
        + "."
        + b64(json.dumps({**payload, "scope": "admin"}).encode())
        + "."
        + signature,
        "tampered signature": f"{head}.{body}.{signature[:-4]}AAAA",
        "not a JWT": "a.b.c",
    }
    async with gateway(idp, oidc_jwks_min_refresh_s=3600) as client:
        assert (await who(client, valid)).status_code == 200
        for case, token in cases.items():
            response = await who(client, token)
            assert response.status_code == 401, (case, response.text)
            assert response.json()["error"] == "unauthorized", case
            assert 'error="invalid_token"' in response.headers["www-authenticate"], case
    # unknown kids did not make the gateway refetch within OIDC_JWKS_MIN_REFRESH_S
    assert p.fetches == 1


async def test_key_rotation_picks_up_a_new_kid(provider: tuple[Provider, Served]) -> None:
    p, idp = provider
    async with gateway(idp, oidc_jwks_min_refresh_s=0) as client:
        assert (await who(client, p.token("rsa-1"))).status_code == 200
        p.add_rsa("rsa-2")
        p.published = ["rsa-2", "ec-1"]  # the provider rotated: rsa-1 retired, rsa-2 signs
        assert (await who(client, p.token("rsa-2"))).status_code == 200
        assert p.fetches == 2
        # the retired key no longer verifies once the cache has learnt the new set
        assert (await who(client, p.token("rsa-1"))).status_code == 401


async def test_jwts_are_refused_when_no_provider_is_configured(provider: tuple[Provider, Served]) -> None:
    p, _ = provider
    app = create_app(gateway_settings("127.0.0.1:1", Names()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        response = await who(client, p.token("rsa-1", scope=" ".join(DATA_PLANE_SCOPES)))
    assert response.status_code == 401
    assert "OIDC" in response.json()["message"]
