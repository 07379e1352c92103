"""The HTTP benchmarks' use of wrk (``benchmarks._wrk``): the reading of its output (``wrk --latency``), on
captured outputs, the commands and the order of the rounds. No wrk run here."""

from __future__ import annotations

import pytest

from benchmarks._wrk import alternating, combined, parse_wrk, wrk_command

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


def test_wrk_commands_of_the_two_benchmarks() -> None:
    url = "http://127.0.0.1:40111/x"
    base = ["wrk", "-t1", "-c50", "-d5s", "--timeout", "10s", "--latency"]
    # bench_gateway: a token header, as many threads as asked but never more than connections
    auth = ("-H", "Authorization: Bearer t")
    assert wrk_command("wrk", url, 50, 5, *auth) == [*base, *auth, url]
    assert wrk_command("wrk", url, 1, 3, *auth, threads=2)[1:4] == ["-t1", "-c1", "-d3s"]
    assert wrk_command("wrk", url, 50, 5, *auth, threads=2)[1] == "-t2"
    # bench_tracing: a Lua script that makes the request a POST
    assert wrk_command("wrk", url, 50, 5, "-s", "/tmp/post.lua") == [*base, "-s", "/tmp/post.lua", url]


def test_wrk_loads_only_the_loopback() -> None:
    with pytest.raises(ValueError, match=r"only loads 127\.0\.0\.1"):
        wrk_command("wrk", "http://example.org:80/", 50, 5)


def test_alternating_rounds_flip_the_order_every_round() -> None:
    assert list(alternating(("off", "on"), 3)) == [
        (1, "off"), (1, "on"), (2, "on"), (2, "off"), (3, "off"), (3, "on"),
    ]  # fmt: skip
    abc = list(alternating(["a", "b", "c"], 2))
    assert abc == [(1, "a"), (1, "b"), (1, "c"), (2, "c"), (2, "b"), (2, "a")]
    assert list(alternating(["a"], 0)) == []
