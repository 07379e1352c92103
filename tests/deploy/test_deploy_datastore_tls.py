"""MongoDB and Elasticsearch over TLS, as the cloud overlay configures them (TLS in MONGO_URL; an https
ELASTICSEARCH_URL with ELASTICSEARCH_CA_CERTS and an API key). The local stand-ins speak no TLS, so each one
is put behind a TLS-terminating proxy on 127.0.0.1 with a self-signed CA: the services' own store classes
must complete a verified handshake to reach it (the proxy speaks nothing else), and refuse a server their CA
did not sign."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

pytestmark = pytest.mark.integration


def _cert(subject: str, key: Any, issuer_key: Any, issuer: str, *, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """test-ca.pem (signed the server), other-ca.pem (did not), server.pem + server.key."""
    folder = tmp_path_factory.mktemp("pki")
    ca_key, other_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    pem = serialization.Encoding.PEM
    (folder / "test-ca.pem").write_bytes(
        _cert("test-ca", ca_key, ca_key, "test-ca", ca=True).public_bytes(pem)
    )
    (folder / "other-ca.pem").write_bytes(
        _cert("other-ca", other_key, other_key, "other-ca", ca=True).public_bytes(pem)
    )
    (folder / "server.pem").write_bytes(
        _cert("server", server_key, ca_key, "test-ca", ca=False).public_bytes(pem)
    )
    (folder / "server.key").write_bytes(
        server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return {name: folder / f"{name}.pem" for name in ("test-ca", "other-ca")} | {
        "cert": folder / "server.pem",
        "key": folder / "server.key",
    }


@contextlib.asynccontextmanager
async def tls_proxy(upstream: tuple[str, int], pki: dict[str, Path]) -> AsyncIterator[int]:
    """A TLS server on a free 127.0.0.1 port that forwards the decrypted bytes to ``upstream``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["cert"], pki["key"])
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(*upstream)
        both = [asyncio.create_task(pipe(client_r, up_w)), asyncio.create_task(pipe(up_r, client_w))]
        tasks.update(both)
        await asyncio.gather(*both, return_exceptions=True)

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _host_port(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    assert parts.hostname
    assert parts.port
    return parts.hostname, parts.port


async def test_search_indexer_talks_to_elasticsearch_over_verified_tls(
    elasticsearch_url: str, pki: dict[str, Path]
) -> None:
    from search_indexer.config import Settings
    from search_indexer.store import MessageStore

    async with tls_proxy(_host_port(elasticsearch_url), pki) as port:
        good = Settings(
            elasticsearch_url=f"https://127.0.0.1:{port}",
            elasticsearch_ca_certs=str(pki["test-ca"]),
            elasticsearch_api_key="dGVzdDp0ZXN0",
            kafka_enabled=False,
        )
        store = MessageStore.from_settings(good)
        try:
            info = await store.es.info()
            assert info["version"]["number"].startswith("8.")
        finally:
            await store.close()
        wrong = good.model_copy(update={"elasticsearch_ca_certs": str(pki["other-ca"])})
        store = MessageStore.from_settings(wrong)
        try:
            with pytest.raises(Exception, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
                await store.es.info()
        finally:
            await store.close()


async def test_log_sink_and_notifier_talk_to_mongodb_over_verified_tls(
    mongo_url: str, pki: dict[str, Path]
) -> None:
    from log_sink.store import WideEventStore
    from notifier.store import NotificationStore

    async with tls_proxy(_host_port(mongo_url), pki) as port:
        url = f"mongodb://127.0.0.1:{port}/?tls=true&tlsCAFile={pki['test-ca']}"
        database = f"tls_{uuid.uuid4().hex[:8]}"
        log_store = WideEventStore(url, database, retention_s=None)
        notifications = NotificationStore(url, database)
        try:
            await log_store.ping()
            await log_store.open()
            await notifications.ping()
        finally:
            with contextlib.suppress(Exception):
                await notifications.drop()
            await notifications.close()
            await log_store.close()
