"""Who is calling: a bearer token becomes an :class:`Identity` (subject, scopes, kind).

A bearer token is, in this order,

* the ``ADMIN_TOKEN`` (compared in constant time) → kind ``admin_token``, subject ``admin``, scope ``admin``;
* an API key whose SHA-256 is listed in ``AUTH_API_KEYS_FILE`` → kind ``api_key`` with that entry's subject
  and scopes (the file holds hashes only; high-entropy keys make a plain SHA-256 sufficient). The deprecated
  shared ``API_KEY`` (sent as ``X-API-Key``) is one more entry: subject ``api-key``, the data-plane scopes;
* a JWT of the OIDC provider (``OIDC_ISSUER``): verified with PyJWT against the provider's JWKS (fetched
  asynchronously, cached, refetched when a token names an unknown ``kid`` but at most every
  ``OIDC_JWKS_MIN_REFRESH_S``), for ``OIDC_ALGORITHMS`` only (asymmetric; the key's type must match the
  algorithm), with ``iss``, ``aud``, ``exp`` (required), ``nbf``/``iat`` and ``OIDC_LEEWAY_S`` of clock skew.
  Scopes come from ``scope`` (space separated) or ``scp`` (a list).

Anything else presented is refused (:class:`AuthError`, a 401). ``python -m gateway.identity new-key`` makes
a key and the entry (with its hash) for the file.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import jwt
from consumer_runtime.auth import same_secret
from consumer_runtime.settings import ConfigError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.config import GatewaySettings
from gateway.logs import log

#: Every scope the gateway knows (docs/security.md has the table of what each allows).
ISSUES_READ, ISSUES_WRITE = "issues:read", "issues:write"
MESSAGES_READ, MESSAGES_WRITE = "messages:read", "messages:write"
NOTIFICATIONS_SELF, LOGS_READ, ADMIN = "notifications:self", "logs:read", "admin"
DATA_PLANE_SCOPES = frozenset(
    {ISSUES_READ, ISSUES_WRITE, MESSAGES_READ, MESSAGES_WRITE, NOTIFICATIONS_SELF, LOGS_READ}
)
SCOPES = DATA_PLANE_SCOPES | {ADMIN}

Kind = Literal["jwt", "api_key", "admin_token", "anonymous"]


@dataclass(frozen=True, slots=True)
class Identity:
    """The caller of one request (``request.state.identity``)."""

    subject: str
    scopes: frozenset[str]
    kind: Kind
    name: str = ""  # the API key's name (logs), else empty

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes

    def allows(self, scope: str) -> bool:
        """``admin`` holds every scope (it acts for any user, on every route)."""
        return scope in self.scopes or ADMIN in self.scopes


#: The caller without a token under ``GATEWAY_AUTH=open`` (``make run``): the data plane, never admin.
ANONYMOUS_OPEN = Identity("anonymous", DATA_PLANE_SCOPES, "anonymous")
#: The caller without a token on a public route.
ANONYMOUS = Identity("anonymous", frozenset(), "anonymous")


class AuthError(Exception):
    """A presented credential is not valid (answered 401)."""


# ============================================================================================ API keys
def key_hash(key: str) -> str:
    """What the keys file stores of a key: the hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key(prefix: str = "gwk") -> str:
    """A fresh API key: 256 random bits (so an unsalted SHA-256 is as good as a password hash)."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


class ApiKeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, description="Who holds it (shown in logs)")
    subject: str = Field(min_length=1, max_length=128, description="The identity's subject (a user id)")
    scopes: list[str] = Field(description="Scopes of docs/security.md")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the key")

    @field_validator("scopes")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - SCOPES)
        if unknown:
            raise ValueError(f"unknown scopes {unknown}; known: {sorted(SCOPES)}")
        return value


class ApiKeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[ApiKeyEntry]


def load_api_keys(path: Path) -> dict[str, Identity]:
    """The keys file as {sha256: identity}; a missing or bad file stops the start naming the variable."""
    try:
        parsed = ApiKeysFile.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"invalid configuration: AUTH_API_KEYS_FILE: cannot read {path}: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid configuration: AUTH_API_KEYS_FILE: {where}: {first['msg']}") from None
    out: dict[str, Identity] = {}
    for entry in parsed.keys:
        if entry.sha256 in out:
            raise ConfigError(f"invalid configuration: AUTH_API_KEYS_FILE: {entry.name!r}: listed twice")
        out[entry.sha256] = Identity(entry.subject, frozenset(entry.scopes), "api_key", entry.name)
    return out


# ================================================================================================ JWKS
#: The JWK key type each accepted algorithm needs (an RSA key never verifies an EC token, and so on).
KEY_TYPE = {
    **{a: "RSA" for a in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")},
    **{a: "EC" for a in ("ES256", "ES384", "ES512")},
    "EdDSA": "OKP",
}


@dataclass(frozen=True, slots=True)
class SigningKey:
    jwk: jwt.PyJWK
    alg: str | None  # the JWK's "alg" when it names one: then only that algorithm may use it


class Jwks:
    """The provider's signing keys by ``kid``, fetched on demand and cached.

    Refetched when older than ``cache_s``, or when a token names a kid not in the cache (the provider
    rotated its keys) — at most once per ``min_refresh_s``, so tokens with made-up kids cannot make the
    gateway hammer the provider. Concurrent requests share one fetch."""

    def __init__(self, url: str, *, min_refresh_s: float, cache_s: float, timeout_s: float = 5.0) -> None:
        self.url = url
        self.min_refresh_s = min_refresh_s
        self.cache_s = cache_s
        self.timeout_s = timeout_s
        self.keys: dict[str, SigningKey] = {}
        self.fetched_at: float | None = None  # monotonic time of the last fetch attempt
        self.fetches = 0
        self._lock = asyncio.Lock()
        self._client: httpx.AsyncClient | None = None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _may_fetch(self, unknown_kid: bool) -> bool:
        if self.fetched_at is None:
            return True
        age = time.monotonic() - self.fetched_at
        return age >= self.cache_s or (unknown_kid and age >= self.min_refresh_s)

    async def key(self, kid: str | None) -> SigningKey:
        known = self._pick(kid)
        if known is not None and not self._may_fetch(False):
            return known
        if self._may_fetch(known is None):
            async with self._lock:
                if self._may_fetch(self._pick(kid) is None):
                    await self._fetch()
        key = self._pick(kid)
        if key is None:
            raise AuthError("token signed with an unknown key (kid)")
        return key

    def _pick(self, kid: str | None) -> SigningKey | None:
        if kid is not None:
            return self.keys.get(kid)
        return next(iter(self.keys.values())) if len(self.keys) == 1 else None

    async def _fetch(self) -> None:
        self.fetched_at = time.monotonic()
        self.fetches += 1
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False)
        try:
            response = await self._client.get(self.url, headers={"accept": "application/json"})
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("jwks fetch failed", url=self.url, error=f"{type(exc).__name__}: {exc}")
            return  # keep the keys we have; a token needing a new one is refused meanwhile
        keys: dict[str, SigningKey] = {}
        for data in document.get("keys", []) if isinstance(document, dict) else []:
            if not isinstance(data, dict) or data.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(data)
            except (jwt.PyJWTError, ValueError, TypeError):
                continue  # a key type or algorithm this gateway does not use
            alg = data.get("alg")
            keys[str(data.get("kid", ""))] = SigningKey(key, alg if isinstance(alg, str) else None)
        self.keys = keys
        log.info("jwks fetched", url=self.url, kids=sorted(keys))


# ============================================================================================ verifier
class Authenticator:
    """Turns the credentials of a request into an :class:`Identity` (or refuses them)."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.open = settings.gateway_auth == "open"
        admin = settings.admin_token.get_secret_value() if settings.admin_token is not None else ""
        self.admin_token = admin or None
        self.api_keys: dict[str, Identity] = (
            load_api_keys(settings.auth_api_keys_file) if settings.auth_api_keys_file else {}
        )
        legacy = settings.api_key.get_secret_value() if settings.api_key is not None else ""
        if legacy:
            self.api_keys.setdefault(
                key_hash(legacy), Identity("api-key", DATA_PLANE_SCOPES, "api_key", "API_KEY (deprecated)")
            )
        self.algorithms = settings.algorithms()
        self.jwks = (
            Jwks(
                str(settings.oidc_jwks_url),
                min_refresh_s=settings.oidc_jwks_min_refresh_s,
                cache_s=settings.oidc_jwks_cache_s,
            )
            if settings.oidc_enabled() and settings.oidc_jwks_url
            else None
        )

    async def close(self) -> None:
        if self.jwks is not None:
            await self.jwks.close()

    async def identify(self, authorization: str | None, x_api_key: str | None) -> Identity | None:
        """The identity of these credentials; ``None`` when none are presented; :class:`AuthError` when
        they are not valid."""
        if authorization is not None:
            scheme, _, token = authorization.strip().partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise AuthError("send 'Authorization: Bearer <token>'")
            return await self.bearer(token)
        if x_api_key is not None:
            found = self.api_keys.get(key_hash(x_api_key))
            if found is None:
                raise AuthError("API key is not valid")
            return found
        return None

    async def bearer(self, token: str) -> Identity:
        if self.admin_token is not None and same_secret(token, self.admin_token):
            return Identity("admin", frozenset({ADMIN}), "admin_token", "ADMIN_TOKEN")
        found = self.api_keys.get(key_hash(token))
        if found is not None:
            return found
        if token.count(".") == 2:
            return await self.verify_jwt(token)
        raise AuthError("bearer token is not valid")

    async def verify_jwt(self, token: str) -> Identity:
        if self.jwks is None:
            raise AuthError("JWT bearer tokens are not accepted: no OIDC provider is configured")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("token is not a valid JWT") from None
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise AuthError(f"token algorithm {alg!r} is not accepted")
        kid = header.get("kid")
        key = await self.jwks.key(kid if isinstance(kid, str) else None)
        if key.jwk.key_type != KEY_TYPE[alg] or (key.alg is not None and key.alg != alg):
            raise AuthError("token algorithm does not match its key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.jwk.key,
                algorithms=[alg],
                audience=self.settings.oidc_audience,
                issuer=self.settings.oidc_issuer,
                leeway=self.settings.oidc_leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise AuthError("token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise AuthError("token is from another issuer") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"token is not valid: {type(exc).__name__}") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise AuthError("token has no subject")
        return Identity(subject, token_scopes(claims), "jwt")


def token_scopes(claims: dict[str, Any]) -> frozenset[str]:
    """``scope`` (space separated, RFC 8693) or ``scp`` (a list, or a string as some providers send)."""
    raw = claims.get("scope", claims.get("scp"))
    if isinstance(raw, str):
        return frozenset(raw.split())
    if isinstance(raw, list):
        return frozenset(s for s in raw if isinstance(s, str))
    return frozenset()


# ================================================================================================= CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.identity", description="Make an API key and its AUTH_API_KEYS_FILE entry"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("new-key", help="print a new key and the JSON entry (with its hash) for the file")
    make.add_argument("--name", required=True, help="who holds the key (shown in logs)")
    make.add_argument("--subject", required=True, help="the identity's subject (a user or service id)")
    make.add_argument("--scopes", required=True, help=f"space separated, of: {' '.join(sorted(SCOPES))}")
    args = parser.parse_args(argv)
    scopes = args.scopes.split()
    unknown = sorted(set(scopes) - SCOPES)
    if unknown:
        parser.error(f"unknown scopes {unknown}")
    key = new_key()
    entry = {"name": args.name, "subject": args.subject, "scopes": scopes, "sha256": key_hash(key)}
    sys.stderr.write("key (give it to its holder; it is not stored anywhere):\n")
    sys.stdout.write(key + "\n")
    sys.stderr.write("entry for the 'keys' list of AUTH_API_KEYS_FILE:\n")
    sys.stderr.write(json.dumps(entry, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
