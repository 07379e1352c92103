"""Process and port helpers (Linux /proc based)."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from ._config import HOST

# Popen objects of the servers this process started, so they are reaped (no zombies, no ResourceWarning).
_children: dict[int, subprocess.Popen[bytes]] = {}


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # "pid (comm) state ppid ..." - comm may contain spaces and parentheses
    return raw[raw.rindex(")") + 2 :].split()


def _reap(pid: int) -> None:
    child = _children.get(pid)
    if child is not None:
        if child.poll() is not None:
            _children.pop(pid, None)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


_DEAD_STATES = ("Z", "X", "x")


def _threads_alive(pid: int) -> bool:
    """Some thread of PID still runs. A multi-threaded process whose main thread exited shows its leader
    as a zombie while the other threads are still tearing down - and still holding its sockets open."""
    try:
        tasks = [t.name for t in Path(f"/proc/{pid}/task").iterdir()]
    except (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError):
        return False
    for tid in tasks:
        try:
            raw = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if raw[raw.rindex(")") + 2 :].split()[0] not in _DEAD_STATES:
            return True
    return False


def is_alive(pid: int) -> bool:
    """True if PID exists and has not finished exiting (a zombie leader with live threads counts as alive:
    its listening sockets close only when the last thread is gone)."""
    _reap(pid)  # waitpid reaps a child only once its whole thread group has exited
    fields = _stat_fields(pid)
    if fields is None:
        return False
    return fields[0] not in _DEAD_STATES or _threads_alive(pid)


def start_time(pid: int) -> int | None:
    """Kernel start time of PID in clock ticks since boot (tells a reused PID apart)."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields is not None else None


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def owned(pid: int | None, marker: str, started: int | None) -> bool:
    """True if PID is alive, its command line mentions `marker` and it started when we recorded."""
    if pid is None or pid <= 0 or not is_alive(pid):
        return False
    if not any(marker in arg for arg in cmdline(pid)):
        return False
    return started is None or start_time(pid) == started


def spawn(
    cmd: list[str], cwd: Path, log_file: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `cmd` in its own session (survives us), stdout+stderr appended to `log_file`. `env`: the
    whole environment (default: ours)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    if log_file.exists() and log_file.stat().st_size > 0:
        log_file.replace(log_file.with_name(log_file.name + ".1"))
    with log_file.open("ab") as log:
        log.write(f"# devservers: {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    _children[proc.pid] = proc
    return proc


def _send(pid: int, group: bool, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if not is_alive(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def terminate(pid: int, group: bool, timeout: float) -> str:
    """SIGTERM (the process group if `group`), wait up to `timeout`, then SIGKILL. Caller checked ownership.

    Returns "terminated" or "killed"."""
    _send(pid, group, signal.SIGTERM)
    if wait_dead(pid, timeout):
        outcome = "terminated"
    else:
        _send(pid, group, signal.SIGKILL)
        wait_dead(pid, 10.0)
        outcome = "killed"
    _children.pop(pid, None)
    return outcome


def kill_now(pid: int, group: bool) -> None:
    _send(pid, group, signal.SIGKILL)
    wait_dead(pid, 10.0)
    _children.pop(pid, None)


def port_in_use(port: int, host: str = HOST) -> bool:
    """Something accepts TCP on host:port, or the port cannot be bound there."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            return e.errno == errno.EADDRINUSE
    return False


def port_accepts(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port_closed(port: int, timeout: float, host: str = HOST) -> bool:
    """Wait (bounded) until nothing accepts on host:port; True if it closed."""
    deadline = time.monotonic() + timeout
    while port_accepts(port, host, timeout=0.2):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def free_port(host: str = HOST) -> int:
    """A port the kernel says is free right now (for private test servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    tail = text.splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in tail) if tail else f"(log {path} is empty)"
