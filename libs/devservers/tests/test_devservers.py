"""devservers against real servers.

Tests that start or stop servers do it in their own data dir (DEVSERVERS_DATA_DIR) on free ports, so the
shared dev servers are only ever ensured (started if missing, then left running), never stopped.
"""

from __future__ import annotations

import asyncio
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
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from devservers import (
    DevServerError,
    Endpoints,
    check,
    drop_mysql_database,
    drop_mysql_database_async,
    ensure,
    ensure_mysql_database,
    ensure_mysql_database_async,
    service_env,
    start_private,
    status,
    stop,
)
from devservers.__main__ import main as cli
from devservers._config import tansu_s3_env
from devservers._health import s3_create_bucket
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
    await drop_mysql_database_async("devservers_t", "devservers_t")
    drop_mysql_database("devservers_t", "devservers_t")  # again: nothing left to drop is fine
    root = await asyncmy.connect(host=ep.mysql_host, port=ep.mysql_port, user="root", password="")
    try:
        async with root.cursor() as cur:
            await cur.execute(
                "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'devservers_t'"
            )
            assert (await cur.fetchone())[0] == 0
            await cur.execute("SELECT COUNT(*) FROM mysql.user WHERE User = 'devservers_t'")
            assert (await cur.fetchone())[0] == 0
    finally:
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


def test_a_zombie_leader_with_live_threads_counts_as_alive() -> None:
    """A multi-threaded server whose main thread exited first shows its leader as a zombie while its other
    threads still run and hold its sockets: it is not gone yet (stop() returned early on this before)."""
    code = (
        "import ctypes, threading, time\n"
        "threading.Thread(target=time.sleep, args=(1.5,)).start()\n"
        "ctypes.CDLL(None).pthread_exit(None)\n"
    )
    proc = subprocess.Popen(["python3", "-c", code])
    try:
        deadline = time.monotonic() + 5
        while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the main thread never exited"
            time.sleep(0.01)
        assert is_alive(proc.pid)  # leader is a zombie, the sleeping thread is not
        assert proc.wait(timeout=10) == 0
        assert not is_alive(proc.pid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


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

    monkeypatch.setattr(
        core, "server_command", lambda *a, **kw: ["sh", "-c", "echo tansu says boom >&2; exit 3"]
    )
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
    monkeypatch.setattr(core, "server_command", lambda *a, **kw: cmd)
    with pytest.raises(DevServerError, match="before the deadline"):
        ensure(["kafka"], timeout=1.5)
    pid = int(marker.read_text())
    assert not is_alive(pid)
    assert not (isolated / "kafka" / "state.json").exists()


# ------------------------------------------------------------------- durable private kafka (Tansu on S3)


async def _produce(bootstrap: str, topic: str, n: int, start: int = 0) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sent = [await producer.send(topic, key=b"k%d" % i, value=b"v%d" % i) for i in range(start, start + n)]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _consume(
    bootstrap: str, topic: str, group: str, n: int, *, commit: bool, wait: float = 20.0
) -> list[bytes]:
    """Up to `n` values from `group`'s committed offsets (else the beginning), for at most `wait` seconds.

    Partitions are assigned by hand (no group membership): Tansu takes a session timeout to notice that
    a member left, which would slow every rejoin down (docs/local-servers.md)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", max_poll_records=n,
    )  # fmt: skip
    await consumer.start()
    values: list[bytes] = []
    try:
        await consumer.topics()  # metadata of every topic
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        deadline = time.monotonic() + wait
        while len(values) < n and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=n - len(values))
            values.extend(msg.value or b"" for msgs in batches.values() for msg in msgs)
        if commit:
            await consumer.commit()
    finally:
        await consumer.stop()
    return values


async def _topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


async def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]  # Tansu needs them explicitly
        offsets = await admin.list_consumer_group_offsets(group, partitions=tps)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def _wait_port_closed(port: int) -> None:
    deadline = time.monotonic() + 10  # the kernel may take a moment to drop the dead listener
    while port_accepts(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not port_accepts(port)


def test_private_s3_answers_creates_buckets_and_stops(tmp_path: Path) -> None:
    with start_private("s3", data_dir=tmp_path / "s3") as s3:
        assert s3.pid is not None
        assert "moto_server" in " ".join(cmdline(s3.pid))
        assert s3.address == f"http://127.0.0.1:{s3.port}"
        assert check("s3", s3.port).ok
        s3_create_bucket(s3.port, "tansu-test")
        s3_create_bucket(s3.port, "tansu-test")  # idempotent
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(s3.address) as r:
            assert b"<Name>tansu-test</Name>" in r.read()
        assert not check("s3", free_port(), timeout=0.5).ok
    assert not port_accepts(s3.port)


async def test_durable_kafka_keeps_topic_records_and_offsets_across_restart(tmp_path: Path) -> None:
    broker = start_private("kafka", data_dir=tmp_path / "k", storage="s3")
    s3 = broker.storage
    try:
        assert s3 is not None
        assert s3.running
        assert broker.durable
        assert broker.storage_url == f"s3://tansu-{broker.port}/"
        assert broker.pid is not None
        assert f"s3://tansu-{broker.port}/" in cmdline(broker.pid)
        await _create_topic(broker.address, "durable", 2)
        await _produce(broker.address, "durable", 300)
        first = await _consume(broker.address, "durable", "g", 100, commit=True)
        assert len(first) == 100

        broker.stop()  # a clean stop ...
        _wait_port_closed(broker.port)
        assert s3.running  # ... of the broker only: its data lives on in the S3 server
        broker.start()
        assert "durable" in await _topics(broker.address)
        offsets = await committed_offsets(broker.address, "g", "durable", 2)
        assert sum(offsets.values()) == 100
        await _produce(broker.address, "durable", 50, start=300)  # appends after the old records

        broker.kill()  # a crash: what was acknowledged (acks=all) is in S3 already
        _wait_port_closed(broker.port)
        broker.start()
        rest = await _consume(broker.address, "durable", "g", 250, commit=True)
        assert len(rest) == 250  # from the committed offsets: nothing twice, nothing lost
        assert await _consume(broker.address, "durable", "g", 1, commit=False, wait=2.0) == []
        assert sorted([*first, *rest]) == sorted(b"v%d" % i for i in range(350))
    finally:
        broker.close()
    assert not broker.running
    assert not s3.running
    assert not port_accepts(broker.port)
    assert not port_accepts(s3.port)


async def test_memory_kafka_forgets_everything_on_restart(tmp_path: Path) -> None:
    with start_private("kafka", data_dir=tmp_path / "k") as broker:
        assert not broker.durable
        assert broker.storage_url == "memory://tansu/"
        await _create_topic(broker.address, "gone", 1)
        broker.restart()
        assert "gone" not in await _topics(broker.address)


async def test_shared_s3_outlives_its_brokers(tmp_path: Path) -> None:
    with start_private("s3", data_dir=tmp_path / "s3") as s3:
        broker = start_private("kafka", data_dir=tmp_path / "k", storage=s3)
        with broker:
            assert broker.storage is s3
            assert not broker.owns_storage
            await _create_topic(broker.address, "kept", 1)
        assert not broker.running
        assert s3.running  # not ours to stop
        s3.stop()
        with pytest.raises(DevServerError, match=r"S3 server .* is not running"):
            broker.start()
        assert not broker.running


def test_s3_is_private_only_and_for_kafka_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a shared dev server"):
        ensure(["s3"])
    with pytest.raises(ValueError, match="kafka only"):
        start_private("mongo", data_dir=tmp_path / "m", storage="s3")
    with pytest.raises(ValueError, match="storage must be"):
        start_private("kafka", data_dir=tmp_path / "k", storage="disk")


def test_tansu_s3_env_points_only_at_the_local_s3() -> None:
    env = tansu_s3_env(
        "http://127.0.0.1:1234",
        {"PATH": "/bin", "AWS_PROFILE": "prod", "AWS_SESSION_TOKEN": "x", "NO_PROXY": "corp"},
    )
    assert {k: v for k, v in env.items() if k.startswith("AWS_")} == {
        "AWS_ENDPOINT": "http://127.0.0.1:1234",
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "devservers",
        "AWS_SECRET_ACCESS_KEY": "devservers",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    assert env["PATH"] == "/bin"
    assert env["NO_PROXY"] == "corp,127.0.0.1,localhost"


def test_down_stops_a_leaked_private_s3(isolated: Path) -> None:
    s3 = start_private("s3")
    try:
        record = isolated / "private" / f"s3-{s3.port}.json"
        state = json.loads(record.read_text())
        dead = subprocess.Popen(["true"])
        dead.wait()
        state["owner_pid"], state["owner_ticks"] = dead.pid, None  # as if the test process had crashed
        record.write_text(json.dumps(state))
        outcome = stop(["kafka"])
        assert outcome[f"s3 (private, port {s3.port})"].startswith("terminated"), outcome
        assert not port_accepts(s3.port)
        assert not record.exists()
    finally:
        s3.stop()
