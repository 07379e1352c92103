"""python -m devservers up|down|status|env [NAME ...]"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from ._config import SERVER_NAMES, DevServerError, data_root
from ._core import ServerStatus, ensure, service_env, status, stop
from ._mysql import ensure_mysql_database

PLATFORM_DB = ("platform", "platform", "platform")  # database, user, password (matches `env`)


def _table(rows: dict[str, ServerStatus]) -> str:
    header = ("server", "port", "answering", "started by", "pid", "detail")
    lines = [header]
    for name, st in rows.items():
        by = "devservers" if st["started_by_us"] else ("external" if st["answering"] else "-")
        detail = st["detail"]
        if st["record"].startswith("stale"):
            detail += " (the server devservers started is gone: stale record removed)"
        if st["log_file"]:
            detail += f"  log: {st['log_file']}"
        lines.append(
            (
                name,
                str(st["port"]),
                "yes" if st["answering"] else "NO",
                by,
                str(st["pid"]) if st["pid"] is not None else "-",
                detail,
            )
        )
    widths = [max(len(r[i]) for r in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in lines
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devservers", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status", "env"))
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"default: all of {', '.join(SERVER_NAMES)}")
    args = parser.parse_args(argv)
    names: list[str] | None = args.names or None
    for n in args.names:
        if n not in SERVER_NAMES:
            parser.error(f"unknown server {n!r}; known: {', '.join(SERVER_NAMES)}")

    try:
        if args.command == "up":
            t0 = time.monotonic()
            ensure(names)
            if names is None or "mysql" in names:
                ensure_mysql_database(*PLATFORM_DB)
            print(_table(status(names)))
            print(f"ready in {time.monotonic() - t0:.1f}s; state in {data_root()}")
        elif args.command == "status":
            print(_table(status(names)))
        elif args.command == "down":
            for name, outcome in stop(names).items():
                print(f"{name}: {outcome}")
        else:
            for key, value in service_env(names).items():
                print(f"{key}={value}")
    except DevServerError as e:
        print(f"devservers {args.command}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
