"""Shared by every benchmark script: timing, the printed table, the JSON result file, the clean-up of a
run's topics."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


class Timer:
    def __enter__(self) -> Timer:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started


def pct(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def report(name: str, rows: Sequence[dict[str, Any]], *, summary: dict[str, Any] | None = None) -> Path:
    """Print ``rows`` as a table and write them (plus the machine) to ``results/<name>.json``."""
    cols = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[_fmt(row.get(c, "")) for c in cols] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    print(f"\n== {name} ==")
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    for k, v in (summary or {}).items():
        print(f"{k}: {_fmt(v)}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": name,
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "system": platform.platform(),
                },
                "rows": rows,
                "summary": summary or {},
            },
            indent=2,
            ensure_ascii=False,
        )
    )
    print(f"-> {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


async def delete_run_topics(bootstrap: str, prefix: str, say: Callable[[str], None]) -> None:
    """Best effort: delete every topic whose name starts with the run's ``prefix``; a leftover is named
    through ``say``, never turned into a failed run."""
    from aiokafka.admin import AIOKafkaAdminClient

    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            mine = [t for t in await admin.list_topics() if t.startswith(prefix)]
            if mine:
                await admin.delete_topics(mine)
        finally:
            await admin.close()
    except Exception as exc:
        say(f"cleanup: topics {prefix}* not deleted: {exc!r}")
