"""ensure / stop / status of the shared dev servers, and private instances for fault tests."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypedDict, TypeVar

from ._config import (
    HOST,
    MARIADBD,
    MEMORY_STORAGE,
    PRIVATE_ONLY,
    SERVER_NAMES,
    DevServerError,
    configured_port,
    data_root,
    s3_bucket_for,
    server_command,
    server_dir,
    spec,
    tansu_s3_env,
    timeout_seconds,
)
from ._health import Health, check, s3_create_bucket
from ._process import (
    cmdline,
    free_port,
    is_alive,
    kill_now,
    log_tail,
    owned,
    port_accepts,
    port_in_use,
    spawn,
    start_time,
    terminate,
    wait_port_closed,
)

T = TypeVar("T")
STATE_FILE = "state.json"
KAFKA_STORAGE = "memory://tansu/ (nothing on disk)"


# --------------------------------------------------------------------------------------------- endpoints


@dataclass(frozen=True)
class Endpoints:
    """Addresses of the servers that `ensure` made sure of. Asking for one that was not ensured raises."""

    ports: dict[str, int] = field(default_factory=dict)

    def _port(self, name: str) -> int:
        try:
            return self.ports[name]
        except KeyError:
            raise DevServerError(f"{name} was not ensured: pass it to ensure([...])") from None

    @property
    def kafka_bootstrap(self) -> str:
        return f"{HOST}:{self._port('kafka')}"

    @property
    def mysql_host(self) -> str:
        self._port("mysql")
        return HOST

    @property
    def mysql_port(self) -> int:
        return self._port("mysql")

    @property
    def mysql_user(self) -> str:
        """Admin account of the local MariaDB (root, empty password); create your own with
        `ensure_mysql_database` for application code."""
        self._port("mysql")
        return "root"

    @property
    def mysql_password(self) -> str:
        self._port("mysql")
        return ""

    @property
    def mongo_url(self) -> str:
        return f"mongodb://{HOST}:{self._port('mongo')}"

    @property
    def elasticsearch_url(self) -> str:
        return f"http://{HOST}:{self._port('elasticsearch')}"

    @property
    def s3_url(self) -> str:
        """Endpoint URL of a private S3 stand-in (moto)."""
        return f"http://{HOST}:{self._port('s3')}"


# ------------------------------------------------------------------------------------------------ state


@dataclass
class State:
    name: str
    port: int
    started_by_us: bool
    pid: int | None = None
    start_ticks: int | None = None  # /proc/PID/stat starttime: tells a reused PID apart
    marker: str = ""
    signal_group: bool = True
    cmd: list[str] = field(default_factory=list)
    data_dir: str = ""
    log_file: str = ""
    started_at: str = ""
    owner_pid: int | None = None  # private instances: the process that started it (and stops it)
    owner_ticks: int | None = None

    def owner_alive(self) -> bool:
        return self.owner_pid is not None and owned(self.owner_pid, "", self.owner_ticks)

    def ours_and_alive(self) -> bool:
        return self.started_by_us and owned(self.pid, self.marker, self.start_ticks)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _load(path: Path) -> State | None:
    try:
        raw = json.loads(path.read_text())
        return State(**raw)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        path.unlink(missing_ok=True)  # unreadable record: nothing we can trust in it
        return None


def _save(path: Path, state: State) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
    tmp.replace(path)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One devservers process at a time per server (e.g. `make test` while a fixture runs ensure)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _parallel(names: list[str], fn: Callable[[str], T]) -> dict[str, T | BaseException]:
    results: dict[str, T | BaseException] = {}
    with ThreadPoolExecutor(max_workers=max(1, len(names)), thread_name_prefix="devservers") as ex:
        futures = {name: ex.submit(fn, name) for name in names}
        for name, fut in futures.items():
            try:
                results[name] = fut.result()
            except Exception as e:
                results[name] = e
    return results


def _validate(names: Iterable[str] | None) -> list[str]:
    if names is None:
        return list(SERVER_NAMES)
    if isinstance(names, str):
        names = [names]
    out: list[str] = []
    for n in names:
        spec(n)  # raises on unknown names
        if n in PRIVATE_ONLY:
            raise ValueError(
                f"{n!r} is not a shared dev server: use start_private({n!r}) or "
                "start_private('kafka', storage='s3')"
            )
        if n not in out:
            out.append(n)
    return out


# ----------------------------------------------------------------------------------------------- health


def _wait_healthy(name: str, port: int, pid: int | None, log_file: str, deadline: float) -> Health:
    """Poll until `name` answers its protocol on `port`; fail early if `pid` dies."""
    s = spec(name)
    last = Health(False, "not checked yet")
    while True:
        if pid is not None and not is_alive(pid):
            raise DevServerError(
                f"{name}: the server (pid {pid}) exited before answering on port {port}; "
                f"last lines of {log_file}:\n{log_tail(Path(log_file))}"
            )
        if port_accepts(port):
            last = check(name, port, timeout=max(0.5, min(3.0, deadline - time.monotonic())))
            if last.ok:
                return last
        else:
            last = Health(False, f"nothing accepts TCP on {HOST}:{port} yet")
        if time.monotonic() >= deadline:
            tail = f"; last lines of {log_file}:\n{log_tail(Path(log_file))}" if log_file else ""
            raise DevServerError(
                f"{name}: no {s.protocol} answer on {HOST}:{port} before the deadline ({last.detail}){tail}"
            )
        time.sleep(0.1)


# ------------------------------------------------------------------------------------------------ start


def _start_child(
    name: str,
    port: int,
    run_dir: Path,
    data_dir: Path,
    *,
    storage: str = MEMORY_STORAGE,
    env: dict[str, str] | None = None,
    storage_detail: str = KAFKA_STORAGE,
) -> State:
    """Start kafka/mongo/elasticsearch/s3 in the background, in its own session (it outlives us)."""
    s = spec(name)
    if name not in ("kafka", "s3"):
        data_dir.mkdir(parents=True, exist_ok=True)
    log_file = run_dir / "server.log"
    cmd = server_command(name, port, data_dir, run_dir, storage=storage)
    proc = spawn(cmd, cwd=run_dir, log_file=log_file, env=env)
    if name == "kafka":
        recorded_data = storage_detail
    elif name == "s3":
        recorded_data = "in the memory of this moto process (nothing on disk)"
    else:
        recorded_data = str(data_dir)
    return State(
        name=name,
        port=port,
        started_by_us=True,
        pid=proc.pid,
        start_ticks=start_time(proc.pid),
        marker=s.marker,
        signal_group=s.signal_group,
        cmd=cmd,
        data_dir=recorded_data,
        log_file=str(log_file),
        started_at=_now(),
    )


def _mariadbd_pids() -> list[int]:
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            args = cmdline(int(entry.name))
            if args and os.path.basename(args[0]) in ("mariadbd", "mysqld") and is_alive(int(entry.name)):
                pids.append(int(entry.name))
    return pids


def _run_logged(cmd: list[str], log_file: Path, what: str) -> None:
    with log_file.open("ab") as log:
        log.write(f"# devservers: {_now()} {' '.join(cmd)}\n".encode())
        log.flush()
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        rc = subprocess.call(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
    if rc != 0:
        raise DevServerError(
            f"mysql: {what} failed (exit {rc}); last lines of {log_file}:\n{log_tail(log_file)}"
        )


def _start_mysql(port: int, run_dir: Path) -> State | None:
    """Start the machine's MariaDB the way the machine does. None: one is already starting (not ours)."""
    if _mariadbd_pids():
        return None  # a mariadbd exists but does not answer yet: wait for it, never start a second one
    apt_log = run_dir / "apt.log"
    if not MARIADBD.exists():
        if os.geteuid() != 0:
            raise DevServerError(
                f"mysql: nothing answers on port {port} and {MARIADBD} is not installed; as root run "
                "`apt-get update && apt-get install -y mariadb-server`, or point DEV_MYSQL_PORT at a server"
            )
        _run_logged(["apt-get", "update"], apt_log, "apt-get update")
        _run_logged(["apt-get", "install", "-y", "mariadb-server"], apt_log, "apt-get install mariadb-server")
        if _mariadbd_pids():  # the package's postinst may have started it
            return None
    sock_dir = Path("/run/mysqld")
    if not sock_dir.exists() and os.geteuid() == 0:
        sock_dir.mkdir(parents=True)
        with contextlib.suppress(LookupError, OSError):
            shutil.chown(sock_dir, "mysql", "mysql")
    ssd = shutil.which("start-stop-daemon") or "/sbin/start-stop-daemon"
    pid_file = run_dir / "mariadbd.pid"
    pid_file.unlink(missing_ok=True)
    log_file = run_dir / "server.log"
    cmd = [
        ssd, "--start", "--oknodo", "--background", "--make-pidfile", "--pidfile", str(pid_file),
        "--output", str(log_file), "--exec", str(MARIADBD), "--", f"--port={port}",
    ]  # fmt: skip
    _run_logged(cmd, log_file, "start-stop-daemon")
    deadline = time.monotonic() + 5
    while not pid_file.exists() or not pid_file.read_text().strip():
        if time.monotonic() > deadline:
            raise DevServerError(f"mysql: start-stop-daemon wrote no pid file {pid_file}")
        time.sleep(0.05)
    pid = int(pid_file.read_text().strip())
    return State(
        name="mysql",
        port=port,
        started_by_us=True,
        pid=pid,
        start_ticks=start_time(pid),
        marker=spec("mysql").marker,
        signal_group=False,
        cmd=cmd,
        data_dir="/var/lib/mysql",
        log_file=str(log_file),
        started_at=_now(),
    )


def _ensure_one(name: str, deadline: float) -> int:
    s = spec(name)
    port = configured_port(name)
    run_dir = server_dir(name)
    state_path = run_dir / STATE_FILE
    with _locked(run_dir):
        st = _load(state_path)
        if st is not None and st.started_by_us:
            if st.ours_and_alive():
                if st.port != port:
                    raise DevServerError(
                        f"{name}: devservers already runs it on port {st.port} (pid {st.pid}) but "
                        f"{s.env_var} asks for {port}; run `python -m devservers down` first"
                    )
                _wait_healthy(name, port, st.pid, st.log_file, deadline)
                return port
            state_path.unlink(missing_ok=True)  # stale: the process we started is gone

        external = State(name=name, port=port, started_by_us=False, started_at=_now())
        if port_accepts(port) and check(name, port).ok:
            _save(state_path, external)
            return port
        if port_in_use(port):
            # maybe a server that is still starting: give it a few seconds before blaming the port
            try:
                _wait_healthy(name, port, None, "", min(deadline, time.monotonic() + 5))
            except DevServerError as e:
                raise DevServerError(
                    f"{name}: port {port} is in use but does not answer the {s.protocol} protocol "
                    f"({e}). Stop what holds the port, or set {s.env_var} to another port."
                ) from None
            _save(state_path, external)
            return port

        if name == "mysql":
            started = _start_mysql(port, run_dir)
            if started is None:  # someone else's mariadbd exists: wait for it, never start a second one
                try:
                    _wait_healthy(name, port, None, "", deadline)
                except DevServerError as e:
                    raise DevServerError(
                        f"{e}. A mariadbd (pid {', '.join(map(str, _mariadbd_pids()))}) is running but "
                        f"does not answer on port {port}: is {s.env_var} right?"
                    ) from None
                _save(state_path, external)
                return port
        else:
            started = _start_child(name, port, run_dir, run_dir / "data")
        _save(state_path, started)
        try:
            _wait_healthy(name, port, started.pid, started.log_file, deadline)
        except DevServerError:
            if started.ours_and_alive() and started.pid is not None:
                terminate(started.pid, started.signal_group, spec(name).stop_timeout)
            state_path.unlink(missing_ok=True)
            raise
        return port


def ensure(names: Iterable[str] | None = None, *, timeout: float | None = None) -> Endpoints:
    """Make sure the named servers (default: all four) answer; start the missing ones concurrently.

    Idempotent: a server that already answers on its port is reused (recorded as external if we did not
    start it). Raises DevServerError (naming the port and its override variable) when a port is taken by
    something else, or a server does not answer within `timeout` seconds (default 60, env
    DEVSERVERS_TIMEOUT)."""
    wanted = _validate(names)
    deadline = time.monotonic() + (timeout if timeout is not None else timeout_seconds())
    results = _parallel(wanted, lambda n: _ensure_one(n, deadline))
    errors = [str(r) for r in results.values() if isinstance(r, BaseException)]
    if errors:
        raise DevServerError("\n".join(errors))
    return Endpoints({n: r for n, r in results.items() if isinstance(r, int)})


# ------------------------------------------------------------------------------------------------- stop


def _stop_record(state_path: Path, wait: float | None = None) -> str:
    st = _load(state_path)
    if st is None:
        return "not recorded"
    if not st.started_by_us:
        state_path.unlink(missing_ok=True)
        return f"external on port {st.port}: left running"
    if st.pid is None or not st.ours_and_alive():
        state_path.unlink(missing_ok=True)
        return f"stale record removed (pid {st.pid} is gone)"
    how = terminate(st.pid, st.signal_group, wait if wait is not None else spec(st.name).stop_timeout)
    wait_port_closed(st.port, 5.0)  # a `make infra-up` right after must not find the port still taken
    state_path.unlink(missing_ok=True)
    return f"{how} pid {st.pid} (port {st.port})"


def stop(names: Iterable[str] | None = None) -> dict[str, str]:
    """Stop the servers that devservers started (default: all), and private instances of those kinds
    whose starting process has died without stopping them. Servers it did not start are never signalled.
    Returns what happened per server."""
    wanted = _validate(names)

    def one(name: str) -> str:
        run_dir = server_dir(name)
        with _locked(run_dir):
            return _stop_record(run_dir / STATE_FILE)

    results = _parallel(wanted, one)
    out = {n: (str(r) if not isinstance(r, BaseException) else f"error: {r}") for n, r in results.items()}
    # a private S3 stand-in only ever serves a private Kafka: cleaned up with the kafka kind
    kinds = {*wanted, *PRIVATE_ONLY} if "kafka" in wanted else set(wanted)
    records = sorted(_private_dir().glob("*.json"), key=lambda r: (r.name.startswith("s3-"), r.name))
    for record in records:  # brokers before the S3 they write to
        st = _load(record)
        if st is not None and st.name in kinds and not st.owner_alive():  # leaked by a crashed test
            out[f"{st.name} (private, port {st.port})"] = _stop_record(record, wait=5.0)
    return out


# ----------------------------------------------------------------------------------------------- status


class ServerStatus(TypedDict):
    port: int
    answering: bool
    detail: str  # version / error of the protocol check
    started_by_us: bool
    pid: int | None
    data_dir: str | None
    log_file: str | None
    record: str  # "ours", "external", "stale record removed", "none"


def _status_one(name: str) -> ServerStatus:
    run_dir = server_dir(name)
    state_path = run_dir / STATE_FILE
    st = _load(state_path)
    port = st.port if st is not None else configured_port(name)
    ours = st is not None and st.ours_and_alive()
    if st is None:
        record = "none"
    elif ours:
        record = "ours"
    elif st.started_by_us:
        with _locked(run_dir):
            again = _load(state_path)
            if again is not None and again.started_by_us and not again.ours_and_alive():
                state_path.unlink(missing_ok=True)
        record = "stale record removed"
    else:
        record = "external"
    health = check(name, port, timeout=2.0) if port_accepts(port) else Health(False, "nothing listening")
    return ServerStatus(
        port=port,
        answering=health.ok,
        detail=health.detail,
        started_by_us=ours,
        pid=st.pid if ours and st is not None else None,
        data_dir=st.data_dir if ours and st is not None else None,
        log_file=st.log_file if ours and st is not None else None,
        record=record,
    )


def status(names: Iterable[str] | None = None) -> dict[str, ServerStatus]:
    """Each server: port, answering?, started_by_us?, pid, data dir, log file. Starts and stops nothing
    (stale records of dead servers are removed)."""
    wanted = _validate(names)
    results = _parallel(wanted, _status_one)
    out: dict[str, ServerStatus] = {}
    for name, r in results.items():
        if isinstance(r, BaseException):
            out[name] = ServerStatus(
                port=spec(name).default_port, answering=False, detail=f"status failed: {r}",
                started_by_us=False, pid=None, data_dir=None, log_file=None, record="?",
            )  # fmt: skip
        else:
            out[name] = r
    return out


def current_port(name: str) -> int:
    """The port `name` runs on per its record, else the configured one (env or default)."""
    st = _load(server_dir(name) / STATE_FILE)
    return st.port if st is not None else configured_port(name)


# ------------------------------------------------------------------------------ private instances (faults)


def _private_dir() -> Path:
    d = data_root() / "private"
    d.mkdir(parents=True, exist_ok=True)
    return d


_private_lock = threading.Lock()
_private_live: set[PrivateServer] = set()


class PrivateServer:
    """A server of our own on its own port and data dir, for tests that kill or restart servers.

    Recorded under .devdata/private/ (so `devservers down` cleans up after a crashed test) and stopped
    when the Python process exits. Use as a context manager (leaving it calls close()), or call
    stop()/close().

    A kafka with `storage` (a private "s3" server) runs Tansu with `--storage-engine s3://tansu-PORT/`
    against it: topics, records and committed offsets survive stop()/kill() + start() of the broker for as
    long as the S3 server runs. stop() stops the broker only; close() also stops an S3 server it owns."""

    def __init__(
        self,
        name: str,
        port: int,
        data_dir: Path,
        timeout: float,
        *,
        storage: PrivateServer | None = None,
        owns_storage: bool = False,
    ) -> None:
        if name == "mysql":
            raise ValueError(
                "start_private does not run MariaDB: create a database with ensure_mysql_database"
            )
        spec(name)
        if storage is not None and (name != "kafka" or storage.name != "s3"):
            raise ValueError(
                f"only a kafka keeps its data in a private s3 server (not {name} in {storage.name})"
            )
        self.name: str = name
        self.port = port
        self.data_dir = data_dir
        self.log_file = data_dir / "server.log"
        self.timeout = timeout
        self.storage = storage
        self.owns_storage = owns_storage and storage is not None
        self._state: State | None = None
        self._record = _private_dir() / f"{name}-{port}.json"

    def __repr__(self) -> str:
        extra = f", storage={self.storage_url!r}" if self.name == "kafka" else ""
        where = f"port={self.port}, pid={self.pid}, data_dir='{self.data_dir}'"
        return f"PrivateServer({self.name!r}, {where}{extra})"

    @property
    def durable(self) -> bool:
        """True for a kafka whose data lives in an S3 server (survives a broker restart)."""
        return self.storage is not None

    @property
    def bucket(self) -> str | None:
        """The S3 bucket a durable kafka keeps its data in."""
        return s3_bucket_for(self.port) if self.storage is not None else None

    @property
    def storage_url(self) -> str:
        """Tansu's --storage-engine (kafka): memory://tansu/ or s3://BUCKET/."""
        return f"s3://{self.bucket}/" if self.storage is not None else MEMORY_STORAGE

    # addresses ---------------------------------------------------------------------------------------
    @property
    def endpoints(self) -> Endpoints:
        return Endpoints({self.name: self.port})

    @property
    def address(self) -> str:
        """bootstrap "host:port" for kafka, URL for mongo/elasticsearch."""
        e = self.endpoints
        return {"kafka": lambda: e.kafka_bootstrap, "mongo": lambda: e.mongo_url,
                "elasticsearch": lambda: e.elasticsearch_url,
                "s3": lambda: e.s3_url}[self.name]()  # fmt: skip

    # lifecycle ---------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        st = self._state
        return st.pid if st is not None and st.ours_and_alive() else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self) -> PrivateServer:
        """Start (again, after stop/kill) on the same port and data dir; wait until it answers."""
        if self.running:
            return self
        if port_in_use(self.port):
            raise DevServerError(f"{self.name}: private port {self.port} is already in use")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env: dict[str, str] | None = None
        detail = KAFKA_STORAGE
        if self.storage is not None:
            if not self.storage.running:
                if not self.owns_storage:
                    raise DevServerError(
                        f"kafka: its S3 server ({self.storage.address}) is not running; start it first"
                    )
                self.storage.start()
            bucket = s3_bucket_for(self.port)
            try:
                s3_create_bucket(self.storage.port, bucket)  # idempotent: kept across restarts
            except OSError as e:
                raise DevServerError(
                    f"kafka: cannot create bucket {bucket} at {self.storage.address}: {e}"
                ) from e
            env = tansu_s3_env(self.storage.address)
            detail = f"{self.storage_url} at {self.storage.address} (moto pid {self.storage.pid})"
        st = _start_child(
            self.name,
            self.port,
            self.data_dir,
            self.data_dir / "data",
            storage=self.storage_url,  # memory unless a kafka with an s3 server
            env=env,
            storage_detail=detail,
        )
        st.owner_pid, st.owner_ticks = os.getpid(), start_time(os.getpid())
        self._state = st
        _save(self._record, st)
        with _private_lock:
            _private_live.add(self)
        try:
            _wait_healthy(self.name, self.port, st.pid, st.log_file, time.monotonic() + self.timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM, wait, then SIGKILL. Idempotent."""
        st = self._state
        if st is not None and st.pid is not None and st.ours_and_alive():
            terminate(
                st.pid, st.signal_group, timeout if timeout is not None else spec(self.name).stop_timeout
            )
            wait_port_closed(self.port, 5.0)  # so start() on the same port right after does not refuse
        self._forget()

    def kill(self) -> None:
        """SIGKILL the server's process group at once (a crash, for fault tests). Idempotent."""
        st = self._state
        if st is not None and st.pid is not None and st.ours_and_alive():
            kill_now(st.pid, st.signal_group)
            wait_port_closed(self.port, 5.0)
        self._forget()

    def restart(self) -> PrivateServer:
        self.stop()
        return self.start()

    def close(self, timeout: float | None = None) -> None:
        """stop(), and stop the S3 server if this kafka owns it (its data is gone then). Idempotent."""
        self.stop(timeout)
        if self.storage is not None and self.owns_storage:
            self.storage.stop(timeout)

    def _forget(self) -> None:
        self._record.unlink(missing_ok=True)
        with _private_lock:
            _private_live.discard(self)

    def __enter__(self) -> PrivateServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_private(
    name: str,
    port: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    timeout: float | None = None,
    storage: str | PrivateServer = "memory",
) -> PrivateServer:
    """Start an extra kafka/mongo/elasticsearch/s3 on `port` (default: a free one) with its own `data_dir`
    (default: .devdata/private/NAME-PORT/); returns once it answers. Never touches the shared servers.

    `storage` (kafka only): "memory" (default: everything is lost when the broker stops); "s3": a durable
    broker backed by an S3 stand-in (moto) of its own, started on a free port and stopped by close() /
    leaving the `with` block; or a running private "s3" server to share (not stopped with the broker)."""
    if port is None:
        port = free_port()
    directory = (Path(data_dir) if data_dir is not None else _private_dir() / f"{name}-{port}").resolve()
    limit = timeout if timeout is not None else timeout_seconds()
    s3: PrivateServer | None = None
    owns = False
    if isinstance(storage, PrivateServer):
        s3 = storage
    elif storage == "s3":
        if name != "kafka":
            raise ValueError(f"storage='s3' is for kafka only, not {name}")
        s3, owns = PrivateServer("s3", free_port(), directory / "s3", limit), True
    elif storage != "memory":
        raise ValueError(f"storage must be 'memory', 's3' or a private s3 server, not {storage!r}")
    srv = PrivateServer(name, port, directory, limit, storage=s3, owns_storage=owns)
    try:
        return srv.start()
    except BaseException:
        if owns and s3 is not None:
            s3.stop()
        raise


@atexit.register
def _stop_private_servers() -> None:
    with _private_lock:
        live = sorted(_private_live, key=lambda srv: srv.name == "s3")  # brokers before their S3
    for srv in live:
        with contextlib.suppress(Exception):
            srv.stop(timeout=5.0)


def service_env(names: Iterable[str] | None = None) -> dict[str, str]:
    """KEY=VALUE settings for the services, pointing at the local servers (no server is contacted)."""
    wanted = _validate(names)
    env: dict[str, str] = {}
    if "kafka" in wanted:
        bootstrap = f"{HOST}:{current_port('kafka')}"
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
        env["KAFKA_BROKER"] = bootstrap
        env["KAFKA_ENABLE_IDEMPOTENCE"] = "false"  # Tansu lacks idempotent producers
    if "mysql" in wanted:
        env["DB_HOST"] = f"{HOST}:{current_port('mysql')}"
        env["DB_NAME"] = "platform"
        env["DB_USERNAME"] = "platform"
        env["DB_PASSWORD"] = "platform"
    if "mongo" in wanted:
        env["MONGO_URL"] = f"mongodb://{HOST}:{current_port('mongo')}"
    if "elasticsearch" in wanted:
        env["ELASTICSEARCH_URL"] = f"http://{HOST}:{current_port('elasticsearch')}"
    return env
