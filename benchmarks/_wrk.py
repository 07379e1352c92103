"""wrk, the HTTP load generator of the benchmarks (``bench_gateway``, ``bench_tracing``): the command, one
run and its figures, the order of the alternating rounds, and one figure over a target's rounds.

``wrk`` is Debian's package: ``make bench`` installs it when run as root (like ``make browser``), else asks
for ``sudo apt-get install wrk``.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if m is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    """The figures of ``wrk --latency`` output: requests, seconds, requests/s, latency percentiles (ms),
    errors (socket errors + non-2xx/3xx answers)."""
    res: dict[str, Any] = {}
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", out)
    if m is None:
        raise ValueError(f"wrk output without a request count:\n{out}")
    res["requests"] = int(m.group(1))
    res["seconds"] = _ms(m.group(2) + m.group(3)) / 1000
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["req_per_s"] = float(m.group(1)) if m else res["requests"] / res["seconds"]
    dist = re.search(r"Latency Distribution\s*\n((?:\s+\d+%\s+\S+\s*\n)+)", out)
    if dist is None:
        raise ValueError(f"wrk output without a latency distribution (run with --latency):\n{out}")
    for pct_s, value in re.findall(r"(\d+)%\s+(\S+)", dist.group(1)):
        res[f"p{pct_s}_ms"] = _ms(value)
    m = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if m:
        res["mean_ms"], res["max_ms"] = _ms(m.group(1)), _ms(m.group(3))
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    res["errors"] = errors
    return res


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit(
            "the HTTP benchmarks need wrk (Debian package): `make bench` as root installs it, "
            "else run: sudo apt-get install wrk"
        )
    return found


def wrk_command(
    wrk: str, url: str, concurrency: int, seconds: int, *options: str, threads: int = 1
) -> list[str]:
    """The command of one run against ``url`` (127.0.0.1 only): ``threads`` (at most one per connection),
    ``concurrency`` connections for ``seconds``, a 10 s request timeout, the latency distribution, then
    ``options`` (``-H header``, ``-s script``)."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"the benchmark only loads 127.0.0.1, not {url}")
    threads = max(1, min(threads, concurrency))
    return [wrk, f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s", "--latency",
            *options, url]  # fmt: skip


async def run_wrk(
    url: str, concurrency: int, seconds: int, *options: str, threads: int = 1
) -> dict[str, Any]:
    """One wrk run (:func:`wrk_command`): its parsed figures."""
    cmd = wrk_command(wrk_binary(), url, concurrency, seconds, *options, threads=threads)
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out_b, _ = await asyncio.wait_for(proc.communicate(), seconds + 30)
    out = out_b.decode(errors="replace")
    if proc.returncode:
        raise RuntimeError(f"wrk exited with {proc.returncode}:\n{out}")
    return parse_wrk(out)


class Measured(Protocol):
    """A server process whose CPU time can be read (``bench_gateway.Server``)."""

    def cpu_seconds(self) -> float: ...


async def run_wrk_on(
    server: Measured, url: str, concurrency: int, seconds: int, *options: str, threads: int = 1
) -> dict[str, Any]:
    """:func:`run_wrk` against ``server``, plus the CPU the server spent per request during the run
    (``server_cpu_ms_per_req``)."""
    cpu = server.cpu_seconds()
    res = await run_wrk(url, concurrency, seconds, *options, threads=threads)
    res["server_cpu_ms_per_req"] = (
        (server.cpu_seconds() - cpu) * 1000 / res["requests"] if res["requests"] else 0.0
    )
    return res


def alternating(targets: Sequence[T], rounds: int) -> Iterator[tuple[int, T]]:
    """``(round, target)``: every target once per round, rounds numbered from 1, the order flipped every
    round (so a drift of the machine hits every target alike)."""
    for i in range(rounds):
        for target in targets if i % 2 == 0 else targets[::-1]:
            yield i + 1, target


def combined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One figure for a target's rounds: requests/s over all of them, the rounds' median percentiles."""
    requests = sum(r["requests"] for r in runs)
    seconds = sum(r["seconds"] for r in runs)

    def median(key: str) -> float:
        values = sorted(float(r[key]) for r in runs)
        return values[len(values) // 2]

    return {
        "requests": requests,
        "errors": sum(r["errors"] for r in runs),
        "req_per_s": requests / seconds if seconds else 0.0,
        **{f"p{p}_ms": median(f"p{p}_ms") for p in (50, 75, 90, 99)},
        "server_cpu_ms_per_req": sum(r["server_cpu_ms_per_req"] * r["requests"] for r in runs) / requests
        if requests
        else 0.0,
    }


def ratio_rounds(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[float]:
    """Round by round: ``a``'s requests/s ÷ ``b``'s."""
    return [round(x["req_per_s"] / y["req_per_s"], 3) for x, y in zip(a, b, strict=True) if y["req_per_s"]]
