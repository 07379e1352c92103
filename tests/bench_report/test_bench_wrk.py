"""The HTTP benchmark's reading of wrk's output (``wrk --latency``), on captured outputs: no wrk run here."""

from __future__ import annotations

import pytest

from benchmarks.bench_gateway import combined, parse_wrk

WRK_OUT = """Running 5s test @ http://127.0.0.1:40111/issues/PRESS_0100_abc123
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    42.07ms    5.12ms 120.50ms   91.20%
    Req/Sec     1.19k    88.41     1.30k    80.00%
  Latency Distribution
     50%   41.10ms
     75%   43.90ms
     90%   47.00ms
     99%  612.00us
  5921 requests in 5.01s, 2.43MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   1181.82
Transfer/sec:    496.45KB
"""


def test_parse_wrk_reads_rate_percentiles_and_errors() -> None:
    res = parse_wrk(WRK_OUT)
    assert res["requests"] == 5921
    assert res["seconds"] == pytest.approx(5.01)
    assert res["req_per_s"] == pytest.approx(1181.82)
    assert res["p50_ms"] == pytest.approx(41.10)
    assert res["p90_ms"] == pytest.approx(47.0)
    assert res["p99_ms"] == pytest.approx(0.612)  # units: us / ms / s
    assert res["mean_ms"] == pytest.approx(42.07)
    assert res["max_ms"] == pytest.approx(120.5)
    assert res["errors"] == 2 + 1 + 4


def test_parse_wrk_without_errors_and_in_seconds() -> None:
    out = WRK_OUT.replace("  Socket errors: connect 0, read 2, write 0, timeout 1\n", "")
    out = out.replace("  Non-2xx or 3xx responses: 4\n", "").replace("99%  612.00us", "99%    1.20s")
    res = parse_wrk(out)
    assert res["errors"] == 0
    assert res["p99_ms"] == pytest.approx(1200.0)


def test_parse_wrk_needs_the_latency_distribution() -> None:
    out = WRK_OUT.split("  Latency Distribution")[0] + "  5921 requests in 5.01s, 2.43MB read\n"
    with pytest.raises(ValueError, match="--latency"):
        parse_wrk(out)


def test_combined_rate_is_over_all_rounds() -> None:
    rounds = [
        {"requests": 1000, "seconds": 1.0, "errors": 0, "server_cpu_ms_per_req": 1.0,
         **{f"p{p}_ms": float(p) for p in (50, 75, 90, 99)}},
        {"requests": 3000, "seconds": 2.0, "errors": 1, "server_cpu_ms_per_req": 2.0,
         **{f"p{p}_ms": float(p) + 1 for p in (50, 75, 90, 99)}},
    ]  # fmt: skip
    fig = combined(rounds)
    assert fig["req_per_s"] == pytest.approx(4000 / 3)
    assert fig["errors"] == 1
    assert fig["server_cpu_ms_per_req"] == pytest.approx((1000 * 1.0 + 3000 * 2.0) / 4000)
