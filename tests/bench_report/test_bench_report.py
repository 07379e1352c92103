"""The benchmark report's pure logic: targets judged from what was measured, and the table built from the
results files (written here into a temporary results directory, not benchmarks/results/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import report
from benchmarks._targets import Target, headline, targets


def test_target_met_follows_its_operator() -> None:
    assert Target("× raw", 0.75, ">=", 0.7).met
    assert not Target("× naive", 7.1, ">=", 10).met
    assert Target("p99", 0.4, "<=", 0.5, "s").met
    assert not Target("p99", 0.6, "<=", 0.5, "s").met
    assert targets(Target("x", 2, ">=", 1))[0]["met"] is True


def test_rounds_that_disagree_leave_a_target_undecided() -> None:
    assert Target("p50", 1.5, "<=", 2.0, spread=(1.0, 1.9)).decided
    assert Target("p50", 2.5, "<=", 2.0, spread=(2.1, 3.0)).decided
    undecided = Target("p50", 1.5, "<=", 2.0, spread=(1.0, 2.4))
    assert undecided.met
    assert not undecided.decided
    assert Target("p50", 1.5, "<=", 2.0).decided  # not measured in rounds
    assert targets(undecided)[0]["decided"] is False


def _write(results: Path, name: str, summary: dict[str, object]) -> None:
    (results / f"{name}.json").write_text(json.dumps({"benchmark": name, "summary": summary}))


def test_report_table_targets_and_overhead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    monkeypatch.setattr(report, "RUNS", tmp_path / "_runs.json")
    (tmp_path / "_runs.json").write_text(
        json.dumps({"bench_sink": {"rc": 0, "seconds": 12.0, "peak_rss_mb": 99.5}, "bench_hop": {"rc": 1}})
    )
    _write(
        tmp_path,
        "sink",
        {
            "headline": headline(
                service_eps=9000,
                raw_eps=10000,
                naive_eps=1000,
                p50_s=0.1,
                p99_s=2.5,
                latency_of="produce→stored",
            ),
            "targets": targets(
                Target("× raw bulk", 0.9, ">=", 0.7),
                Target("p99", 2.5, "<=", 2.0, "s", why_missed="the refresh interval"),
            ),
        },
    )
    _write(
        tmp_path,
        "hop",
        {
            "overhead": [
                {
                    "endpoint": "GET x",
                    "concurrency": 1,
                    "direct_p50_ms": 1.0,
                    "via_p50_ms": 2.5,
                    "overhead_p50_ms": 1.5,
                    "direct_p99_ms": 3.0,
                    "via_p99_ms": 5.0,
                    "overhead_p99_ms": 2.0,
                    "overhead_p50_rounds_ms": [1.2, 1.9, 1.4],
                }
            ],
            "targets": targets(
                Target("GET x overhead p50", 1.5, "<=", 2.0, "ms", spread=(1.2, 1.9)),
                Target("GET y overhead p50", 1.8, "<=", 2.0, "ms", why_missed="2 cores", spread=(0.4, 3.1)),
            ),
        },
    )
    rows, raw = report.load_rows()
    text = report.render(rows, raw, {"kafka": "test"})

    sink_line = next(line for line in text.splitlines() if line.startswith("| sink "))
    cells = [c.strip() for c in sink_line.strip("|").split("|")]
    assert cells[1:6] == ["9,000", "10,000", "1,000", "0.90", "9.0"]
    assert cells[6:8] == ["100 ms", "2.50 s"]
    assert cells[9:] == ["100 MB", "12 s"]
    assert "| hop (FAILED) |" in text
    assert "| GET x | 1 | 1.00 ms | 2.50 ms | **+1.50 ms** | +1.20 … +1.90 ms |" in text
    missed = text.split("Missed:")[1].split("Not decided")[0]
    assert "**sink** p99: 2.5 s (target <= 2 s) — the refresh interval" in missed
    undecided = text.split("Not decided by this run")[1].split("Met:")[0]
    # 1.8 ms is under the target, but some rounds were over it: neither met nor missed
    assert "**hop** GET y overhead p50: 1.8 ms (target <= 2 ms); its rounds ranged 0.4…3.1 ms — 2 cores" in (
        undecided
    )
    met = text.split("Met:")[1]
    assert "GET y" not in met
    assert "GET y" not in missed
    assert "sink × raw bulk: 0.9 (target >= 0.7)" in met
    assert "hop GET x overhead p50: 1.5 ms (target <= 2 ms)" in met
    assert "Failed in this run" in text


def test_naive_ceiling_names_the_limit() -> None:
    from benchmarks._targets import naive_ceiling

    below = naive_ceiling(3500, 4300, 1000, 10, "insert_many", "insert_one per event")
    assert "only 4.3× insert_one per event" in below
    assert "no client reaches 10×" in below
    above = naive_ceiling(10800, 14300, 1300, 10, "executemany", "INSERT+COMMIT per event")
    assert "11.0× INSERT+COMMIT per event" in above
    assert "need 0.91× raw bulk" in above
    assert "runs at 0.76×" in above


def test_throughput_targets_judge_both_ratios() -> None:
    from benchmarks._targets import throughput_targets

    raw, naive = throughput_targets(7000, 10000, 1000, naive_goal=5, bulk="_bulk", single="one call")
    assert (raw.name, raw.met) == ("× raw bulk", True)
    assert (naive.name, naive.measured, naive.met) == ("× naive", 7.0, True)
    raw, naive = throughput_targets(3000, 10000, 1000, naive_goal=5, bulk="_bulk", single="one call")
    assert not raw.met
    assert not naive.met
    assert "10.0× one call" in naive.why_missed


def test_pct_is_nearest_rank_on_0_to_100() -> None:
    from benchmarks._common import pct

    values = [float(v) for v in range(1, 101)]  # 1..100, shuffled order must not matter
    assert pct(values[::-1], 50) == 51.0
    assert pct(values, 99) == 99.0
    assert pct(values, 100) == 100.0
    assert pct([7.0], 99) == 7.0


def test_report_has_the_tracing_off_vs_on_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bench_tracing's results: one row per path with its off and on rates, their ratio and the rounds'."""
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    monkeypatch.setattr(report, "RUNS", tmp_path / "_runs.json")
    gateway = {
        "path": "gateway POST /messages",
        "unit": "requests",
        "how": "wrk",
        "off_per_s": 2000.0,
        "on_per_s": 1500.0,
        "on_over_off": 0.75,
        "on_over_off_rounds": [0.7, 0.8],
        "off_cpu_ms_per_unit": 0.3,
        "on_cpu_ms_per_unit": 0.45,
        "spans_exported": 9000,
        "spans_per_unit": 2.0,
    }
    sink = {
        "path": "search-indexer drain (make run defaults)",
        "unit": "events",
        "how": "a backlog",
        "off_per_s": 3400.0,
        "on_per_s": 3230.0,
        "on_over_off": 0.95,
        "on_over_off_rounds": [0.94, 0.96],
        "spans_exported": 80,
        "spans_per_unit": 0.002,
    }
    from benchmarks.bench_tracing import headline_of

    summary = {"headline": headline_of([gateway, sink]), "tracing": [gateway, sink], "exporter": "BSP + OTLP"}
    _write(tmp_path, "tracing", summary)
    rows, raw = report.load_rows()
    text = report.render(rows, raw, {"kafka": "test"})

    assert "### Tracing off vs on (OpenTelemetry, same run)" in text
    gateway_row = "| gateway POST /messages (requests) | 2,000 | 1,500 | **0.75** | 0.70, 0.80 "
    assert gateway_row + "| 0.30 → 0.45 ms | 2 |" in text
    assert (
        "| search-indexer drain (make run defaults) (events) | 3,400 | 3,230 | **0.95** | 0.94, 0.96 | – |"
        in text
    )
    assert "BSP + OTLP" in text
    main_row = next(line for line in text.splitlines() if line.startswith("| tracing "))
    assert (
        "tracing on ÷ off: gateway POST /messages 0.75; search-indexer drain (make run defaults) 0.95"
        in main_row
    )
