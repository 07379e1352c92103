"""devservers against real servers.

Tests that start or stop servers do it in their own data dir (DEVSERVERS_DATA_DIR) on free ports, so the
shared dev servers are only ever ensured (started if missing, then left running), never stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pymongo
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from devservers import (
    DevServerError,
    Endpoints,
    ensure,
    ensure_mysql_database,
    ensure_mysql_database_async,
    service_env,
    start_private,
    status,
    stop,
)
from devservers.__main__ import main as cli
from devservers._process import cmdline, free_port, is_alive, port_accepts

pytestmark = pytest.mark.integration

ALL = ["kafka", "mysql", "mongo", "elasticsearch"]


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A data dir and free ports of our own: whatever the test starts, it stops."""
    data = tmp_path / "devdata"
    monkeypatch.setenv("DEVSERVERS_DATA_DIR", str(data))
    for var in ("DEV_KAFKA_PORT", "DEV_MONGO_PORT", "DEV_ES_PORT"):
        monkeypatch.setenv(var, str(free_port()))
    yield data
    stop()  # only what this data dir recorded


def _listening_pids(marker: str, port: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            args = " ".join(cmdline(int(entry.name)))
            if marker in args and str(port) in args and is_alive(int(entry.name)):
                pids.append(int(entry.name))
    return pids


# ------------------------------------------------------------------------------------- shared servers


def test_ensure_twice_reuses_the_same_servers() -> None:
    first = ensure(ALL)
    before = status()
    second = ensure(ALL)
    after = status()
    assert first == second
    assert first.kafka_bootstrap.startswith("127.0.0.1:")
    assert first.mongo_url.startswith("mongodb://127.0.0.1:")
    assert first.elasticsearch_url.startswith("http://127.0.0.1:")
    assert (first.mysql_host, first.mysql_user, first.mysql_password) == ("127.0.0.1", "root", "")
    for name in ALL:
        assert after[name]["answering"], after[name]
        assert after[name]["pid"] == before[name]["pid"]
        assert after[name]["started_by_us"] == before[name]["started_by_us"]
    if after["kafka"]["started_by_us"]:
        assert _listening_pids("tansu", after["kafka"]["port"]) == [after["kafka"]["pid"]]


async def test_ensure_works_inside_a_running_event_loop() -> None:
    ep = ensure(["kafka", "mysql"])  # a sync call from async code: the checks run on a helper thread
    admin = AIOKafkaAdminClient(bootstrap_servers=ep.kafka_bootstrap)
    await admin.start()
    try:
        assert isinstance(await admin.list_topics(), list)
    finally:
        await admin.close()


def test_endpoints_only_for_what_was_asked() -> None:
    ep = Endpoints({"kafka": 9092})
    assert ep.kafka_bootstrap == "127.0.0.1:9092"
    with pytest.raises(DevServerError, match="mongo was not ensured"):
        _ = ep.mongo_url


def test_status_and_env_cli(capsys: pytest.CaptureFixture[str]) -> None:
    ensure(ALL)
    assert cli(["status"]) == 0
    table = capsys.readouterr().out
    for name in ALL:
        assert name in table
    assert cli(["env"]) == 0
    lines = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    assert lines == service_env()
    assert set(lines) == {
        "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BROKER", "KAFKA_ENABLE_IDEMPOTENCE",
        "DB_HOST", "DB_NAME", "DB_USERNAME", "DB_PASSWORD", "MONGO_URL", "ELASTICSEARCH_URL",
    }  # fmt: skip
    assert lines["DB_HOST"] == "127.0.0.1:3306" or lines["DB_HOST"].startswith("127.0.0.1:")


async def test_ensure_mysql_database_is_idempotent() -> None:
    import asyncmy

    ep = ensure(["mysql"])
    ensure_mysql_database("devservers_t", "devservers_t", "pw1")
    await ensure_mysql_database_async("devservers_t", "devservers_t", "pw2")  # password changes
    conn = await asyncmy.connect(
        host=ep.mysql_host, port=ep.mysql_port, user="devservers_t", password="pw2", db="devservers_t"
    )
    try:
        async with conn.cursor() as cur:
            await cur.execute("SELECT @@character_set_database")
            assert (await cur.fetchone())[0] == "utf8mb4"
            await cur.execute("CREATE TABLE IF NOT EXISTS t (s VARCHAR(10)) ")
            await cur.execute("INSERT INTO t VALUES (%s)", ("한국어😀",))
            await cur.execute("SELECT s FROM t")
            assert (await cur.fetchone())[0] == "한국어😀"
    finally:
        conn.close()
    root = await asyncmy.connect(host=ep.mysql_host, port=ep.mysql_port, user="root", password="")
    async with root.cursor() as cur:
        await cur.execute("DROP DATABASE devservers_t")
        await cur.execute("DROP USER 'devservers_t'@'%', 'devservers_t'@'localhost'")
    root.close()


# ------------------------------------------------------------------------------- our own data dir


def test_start_ensure_again_and_stop_in_own_data_dir(isolated: Path) -> None:
    names = ["kafka", "mongo", "elasticsearch"]
    ep = ensure(names)
    st = status(names)
    for name in names:
        assert st[name]["answering"], st[name]
        assert st[name]["started_by_us"], st[name]
        state = json.loads((isolated / name / "state.json").read_text())
        assert state["pid"] == st[name]["pid"]
        assert Path(state["log_file"]).is_file()
    assert ensure(names) == ep
    assert {n: status(names)[n]["pid"] for n in names} == {n: st[n]["pid"] for n in names}

    outcome = stop(names)
    for name in names:
        assert outcome[name].startswith("terminated"), outcome
        assert not port_accepts(st[name]["port"])
        assert not is_alive(st[name]["pid"] or 0)
        assert not (isolated / name / "state.json").exists()
    assert stop(names) == dict.fromkeys(names, "not recorded")


def test_port_taken_by_something_else_fails_naming_port_and_variable(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        monkeypatch.setenv("DEV_ES_PORT", str(port))

        def refuse() -> None:  # accept and answer nonsense, like an unrelated service
            with contextlib.suppress(OSError):
                while True:
                    conn, _ = srv.accept()
                    conn.sendall(b"SSH-2.0-nope\r\n")
                    conn.close()

        threading.Thread(target=refuse, daemon=True).start()
        with pytest.raises(DevServerError) as err:
            ensure(["elasticsearch"], timeout=10)
    assert str(port) in str(err.value)
    assert "DEV_ES_PORT" in str(err.value)
    assert not (isolated / "elasticsearch" / "state.json").exists()


def test_server_we_did_not_start_is_reused_and_never_stopped(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with start_private("kafka", data_dir=isolated.parent / "other") as other:
        monkeypatch.setenv("DEV_KAFKA_PORT", str(other.port))
        assert ensure(["kafka"]).kafka_bootstrap == other.address
        st = status(["kafka"])["kafka"]
        assert st["answering"]
        assert not st["started_by_us"]
        assert st["record"] == "external"
        assert stop(["kafka"])["kafka"].startswith("external")
        assert other.running
        assert port_accepts(other.port)


def test_stale_and_foreign_records_are_cleaned_without_signalling(isolated: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    for name, pid in (("kafka", dead.pid), ("mongo", os.getpid())):  # our own pid: alive, but not nx-27017
        (isolated / name).mkdir(parents=True, exist_ok=True)
        record = {"name": name, "port": 1, "started_by_us": True, "pid": pid, "marker": "tansu"}
        if name == "mongo":
            record["marker"] = "nx-27017"
        (isolated / name / "state.json").write_text(json.dumps(record))
    assert status(["kafka"])["kafka"]["record"] == "stale record removed"
    assert not (isolated / "kafka" / "state.json").exists()
    assert stop(["mongo"])["mongo"].startswith("stale record removed")
    assert is_alive(os.getpid())


# ------------------------------------------------------------------------------- private instances


async def test_private_kafka_stops_and_frees_its_port(tmp_path: Path) -> None:
    port = free_port()
    srv = start_private("kafka", port, tmp_path / "k")
    try:
        assert srv.pid is not None
        assert "tansu" in " ".join(cmdline(srv.pid))
        admin = AIOKafkaAdminClient(bootstrap_servers=srv.address)
        await admin.start()
        try:
            await admin.create_topics([NewTopic("t", num_partitions=2, replication_factor=1)])
            assert "t" in await admin.list_topics()
        finally:
            await admin.close()
        pid = srv.pid
    finally:
        srv.stop()
    assert srv.pid is None
    assert not is_alive(pid)
    assert not port_accepts(port)
    srv.stop()  # idempotent


def test_private_mongo_survives_kill_9(tmp_path: Path) -> None:
    with start_private("mongo", data_dir=tmp_path / "m") as srv:
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(srv.address)
        client.db.c.insert_many([{"_id": f"e-{i}"} for i in range(100)])
        client.close()
        srv.kill()
        deadline = time.monotonic() + 10  # the kernel may take a moment to drop the dead listener
        while port_accepts(srv.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not port_accepts(srv.port)
        srv.start()
        client = pymongo.MongoClient(srv.address)
        assert client.db.c.count_documents({}) == 100
        client.close()
    assert not port_accepts(srv.port)


def test_private_elasticsearch(tmp_path: Path) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with start_private("elasticsearch", data_dir=tmp_path / "es") as srv, opener.open(srv.address) as r:
        assert json.loads(r.read())["version"]["number"].startswith("8.")
    assert not port_accepts(srv.port)


def test_private_refuses_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(DevServerError, match="already in use"):
            start_private("kafka", s.getsockname()[1], tmp_path)
    with pytest.raises(ValueError, match="MariaDB"):
        start_private("mysql", free_port(), tmp_path)


# ------------------------------------------------------------------------------------- failure paths


def test_server_that_dies_at_startup_reports_its_log(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import devservers._core as core

    monkeypatch.setattr(core, "server_command", lambda *a: ["sh", "-c", "echo tansu says boom >&2; exit 3"])
    with pytest.raises(DevServerError, match="tansu says boom") as err:
        ensure(["kafka"])
    assert "exited before answering" in str(err.value)
    assert not (isolated / "kafka" / "state.json").exists()


def test_server_that_never_answers_is_stopped_after_the_deadline(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import devservers._core as core

    marker = isolated / "started"
    cmd = ["sh", "-c", f"echo $$ > {marker}; sleep 30; : tansu"]
    monkeypatch.setattr(core, "server_command", lambda *a: cmd)
    with pytest.raises(DevServerError, match="before the deadline"):
        ensure(["kafka"], timeout=1.5)
    pid = int(marker.read_text())
    assert not is_alive(pid)
    assert not (isolated / "kafka" / "state.json").exists()
