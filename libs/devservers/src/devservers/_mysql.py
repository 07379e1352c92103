"""Application databases and users on the local MariaDB."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from ._config import HOST, DevServerError
from ._core import current_port
from ._health import run_sync

_IDENT = re.compile(r"^[A-Za-z0-9_]{1,64}$")
# 'user'@'%' for TCP from anywhere; 'user'@'localhost' because MariaDB maps 127.0.0.1 to localhost and a
# more specific host row (an anonymous ''@'localhost', on some installs) would otherwise win.
_USER_HOSTS = ("%", "localhost")
_CHARSET = "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"


def _check_ident(kind: str, value: str) -> None:
    if not _IDENT.match(value):
        raise ValueError(f"{kind} {value!r}: use 1-64 letters, digits or underscores")


async def _admin_connection(port: int, admin_user: str, admin_password: str) -> Any:
    import asyncmy

    try:
        return await asyncio.wait_for(
            asyncmy.connect(
                host=HOST, port=port, user=admin_user, password=admin_password, connect_timeout=5
            ),
            10,
        )
    except Exception as e:
        raise DevServerError(f"mysql: cannot log in as {admin_user} on {HOST}:{port}: {e}") from e


async def ensure_mysql_database_async(
    name: str,
    user: str,
    password: str,
    *,
    port: int | None = None,
    admin_user: str = "root",
    admin_password: str = "",
) -> None:
    """Create database `name` (utf8mb4) and `user` with all privileges on it, idempotently.

    Re-running resets the user's password to `password` and the database's default charset to utf8mb4
    (existing tables are left alone). Then logs in as `user` to prove it works."""
    import asyncmy

    _check_ident("database", name)
    _check_ident("user", user)
    port = port if port is not None else current_port("mysql")
    conn = await _admin_connection(port, admin_user, admin_password)
    try:
        async with conn.cursor() as cur:
            # look before creating: "IF NOT EXISTS" on an existing object makes asyncmy log a warning
            await cur.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,))
            if not await cur.fetchone():
                await cur.execute(f"CREATE DATABASE IF NOT EXISTS `{name}` {_CHARSET}")
            await cur.execute(f"ALTER DATABASE `{name}` {_CHARSET}")
            for host in _USER_HOSTS:
                account = f"'{user}'@'{host.replace('%', '%%')}'"  # %-escaped: the query has parameters
                await cur.execute("SELECT 1 FROM mysql.user WHERE User = %s AND Host = %s", (user, host))
                verb = "ALTER USER" if await cur.fetchone() else "CREATE USER IF NOT EXISTS"
                await cur.execute(f"{verb} {account} IDENTIFIED BY %s", (password,))
                await cur.execute(f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{user}'@'{host}'")
        await conn.commit()
    finally:
        conn.close()

    try:
        check = await asyncio.wait_for(
            asyncmy.connect(host=HOST, port=port, user=user, password=password, db=name, connect_timeout=5),
            10,
        )
    except Exception as e:
        raise DevServerError(f"mysql: created {user}@{name} but cannot log in with it: {e}") from e
    check.close()


def ensure_mysql_database(
    name: str,
    user: str,
    password: str,
    *,
    port: int | None = None,
    admin_user: str = "root",
    admin_password: str = "",
) -> None:
    """Sync version of `ensure_mysql_database_async` (safe to call while an event loop runs: it then runs
    in a helper thread)."""
    run_sync(
        lambda: ensure_mysql_database_async(
            name, user, password, port=port, admin_user=admin_user, admin_password=admin_password
        )
    )


async def drop_mysql_database_async(
    name: str,
    user: str,
    *,
    port: int | None = None,
    admin_user: str = "root",
    admin_password: str = "",
) -> None:
    """Drop database `name` and `user` (both host rows `ensure_mysql_database_async` creates), e.g. at the end
    of a test; what does not exist is fine."""
    _check_ident("database", name)
    _check_ident("user", user)
    conn = await _admin_connection(
        port if port is not None else current_port("mysql"), admin_user, admin_password
    )
    try:
        async with conn.cursor() as cur:  # DROP statements commit implicitly
            await cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            for host in _USER_HOSTS:
                await cur.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
    finally:
        conn.close()


def drop_mysql_database(
    name: str,
    user: str,
    *,
    port: int | None = None,
    admin_user: str = "root",
    admin_password: str = "",
) -> None:
    """Sync version of `drop_mysql_database_async` (safe to call while an event loop runs)."""
    run_sync(
        lambda: drop_mysql_database_async(
            name, user, port=port, admin_user=admin_user, admin_password=admin_password
        )
    )
