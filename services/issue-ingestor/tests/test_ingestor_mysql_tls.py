"""DB_SSL_*: the issue-ingestor's store against a real MariaDB of this test's own that serves TLS with a
self-signed CA and refuses plain connections (require_secure_transport). The shared dev server has TLS off,
so a private one (a throw-away data directory, a free port on 127.0.0.1) is started and stopped here."""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asyncmy.errors import OperationalError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from devservers import free_port
from issue_ingestor.config import Settings
from issue_ingestor.store import IssueStore
from pydantic import SecretStr

pytestmark = pytest.mark.integration

MARIADBD = Path("/usr/sbin/mariadbd")
INSTALL_DB = shutil.which("mariadb-install-db")
PASSWORD = "tls-test-password"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: Any, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _ca(folder: Path, cn: str) -> tuple[Any, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (folder / f"{cn}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def _server_cert(folder: Path, ca_key: Any, ca_cert: x509.Certificate) -> None:
    """Names 127.0.0.1 only (not `localhost`): the identity check has something to refuse."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("mariadb-test"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, folder / "server.key")


def _sql(socket: Path, statement: str) -> None:
    subprocess.run(
        ["mariadb", "--no-defaults", f"--socket={socket}", "-uroot", "-e", statement],
        check=True,
        capture_output=True,
        timeout=30,
    )


@pytest.fixture(scope="module")
def tls_mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    if not MARIADBD.exists() or INSTALL_DB is None:
        pytest.fail("mariadb-server is not installed (devservers installs it: make infra-up)")
    folder = tmp_path_factory.mktemp("mariadb-tls")
    ca_key, ca_cert = _ca(folder, "test-ca")
    _ca(folder, "other-ca")
    _server_cert(folder, ca_key, ca_cert)
    data, socket, port = folder / "data", folder / "mysqld.sock", free_port()
    user = ["--user=root"] if Path("/proc/self").stat().st_uid == 0 else []
    subprocess.run(
        [INSTALL_DB, "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal",
         "--skip-test-db", *user],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    server = subprocess.Popen(
        [str(MARIADBD), "--no-defaults", f"--datadir={data}", f"--socket={socket}", f"--port={port}",
         "--bind-address=127.0.0.1", f"--pid-file={folder / 'mariadbd.pid'}",
         f"--log-error={folder / 'err.log'}",
         "--skip-log-bin", "--innodb-buffer-pool-size=16M", "--require-secure-transport=ON",
         f"--ssl-ca={folder / 'test-ca.pem'}", f"--ssl-cert={folder / 'server.pem'}",
         f"--ssl-key={folder / 'server.key'}", *user],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _sql(socket, "SELECT 1")
                break
            except subprocess.CalledProcessError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log = (folder / "err.log").read_text(errors="replace")[-2000:]
                    pytest.fail(f"the private MariaDB did not start:\n{log}")
                time.sleep(0.2)
        _sql(
            socket,
            "CREATE DATABASE chatbot_db; "
            f"CREATE USER 'tls_user'@'%' IDENTIFIED BY '{PASSWORD}' REQUIRE SSL; "
            "GRANT ALL ON chatbot_db.* TO 'tls_user'@'%';",
        )
        yield port, folder
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def _settings(port: int, host: str = "127.0.0.1", **env: Any) -> Settings:
    return Settings(
        db_host=f"{host}:{port}",
        db_name="chatbot_db",
        db_username="tls_user",
        db_password=SecretStr(PASSWORD),
        db_connect_timeout_s=5,
        kafka_enabled=False,
        **env,
    )


async def _session_cipher(store: IssueStore) -> str:
    async with store.connection() as conn, conn.cursor() as cur:
        await cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        row = await cur.fetchone()
    return str(row[1])


async def test_store_connects_over_tls_verifying_the_ca_and_the_host(tls_mariadb: tuple[int, Path]) -> None:
    port, folder = tls_mariadb
    store = IssueStore(_settings(port, db_ssl=True, db_ssl_ca=str(folder / "test-ca.pem")))
    try:
        await store.open()  # the migrations run over the TLS connection
        assert await _session_cipher(store)  # a cipher: the session is encrypted
        assert 1 in await store.schema_versions()
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("host", "env", "reason"),
    [
        # plain TCP: the server (and the user, REQUIRE SSL) insist on TLS
        ("127.0.0.1", {}, r"Access denied|insecure transport"),
        # a CA that did not sign the server's certificate
        (
            "127.0.0.1",
            {"db_ssl": True, "db_ssl_ca": "other-ca.pem"},
            r"CERTIFICATE_VERIFY_FAILED.*self-signed",
        ),
        # the certificate names 127.0.0.1, not localhost (DB_SSL_VERIFY_IDENTITY defaults to true)
        ("localhost", {"db_ssl": True, "db_ssl_ca": "test-ca.pem"}, r"Hostname mismatch"),
    ],
)
async def test_store_refuses_what_tls_must_refuse(
    tls_mariadb: tuple[int, Path], host: str, env: dict[str, Any], reason: str
) -> None:
    port, folder = tls_mariadb
    if "db_ssl_ca" in env:
        env = {**env, "db_ssl_ca": str(folder / env["db_ssl_ca"])}
    store = IssueStore(_settings(port, host=host, **env))
    try:
        with pytest.raises(OperationalError, match=reason):
            await store.open()
    finally:
        await store.close()


async def test_identity_check_can_be_turned_off_for_an_address_the_cert_does_not_name(
    tls_mariadb: tuple[int, Path],
) -> None:
    port, folder = tls_mariadb
    settings = _settings(
        port,
        host="localhost",
        db_ssl=True,
        db_ssl_ca=str(folder / "test-ca.pem"),
        db_ssl_verify_identity=False,
    )
    store = IssueStore(settings)
    try:
        await store.open()
        assert await _session_cipher(store)
    finally:
        await store.close()


def test_ssl_context_settings() -> None:
    assert _settings(3306).db_ssl_context() is None
    context = _settings(3306, db_ssl=True).db_ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    with pytest.raises(ValueError, match="DB_SSL=true"):
        _settings(3306, db_ssl_ca="/etc/ssl/certs/ca-certificates.crt").db_ssl_context()
    with pytest.raises(FileNotFoundError):
        _settings(3306, db_ssl=True, db_ssl_ca="/nonexistent/ca.pem").db_ssl_context()
