"""`make bench`: run every benchmarks/bench_*.py in its own process, one after another, then the report.

    python -m benchmarks                     # all, then benchmarks/results/REPORT.md
    python -m benchmarks bench_log_sink      # only the named ones (the report still covers all results)

While a benchmark runs its own output streams through; every ``BENCH_HEARTBEAT_S`` (15) seconds the runner
adds a progress line (elapsed time, memory of the benchmark's process group). Wall time and peak RSS of each
script go to ``results/_runs.json`` for the report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
RUNS = HERE / "results" / "_runs.json"
BUDGET_S = 15 * 60  # issue 19: `make bench` end to end in under 15 minutes


def group_rss_kb(pgid: int) -> int:
    """Resident memory of every process in the process group (the benchmark and what it started)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) != pgid:  # field 5 of /proc/PID/stat: process group
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total


def run_one(name: str, heartbeat_s: float) -> dict[str, float | int]:
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", f"benchmarks.{name}"], cwd=HERE.parent, start_new_session=True
    )
    peak_kb, next_beat = 0, started + heartbeat_s
    try:
        while True:
            # wait4 (not poll) so the child's own peak RSS (ru_maxrss) comes back with its exit status
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                peak_kb = max(peak_kb, usage.ru_maxrss)
                break
            peak_kb = max(peak_kb, group_rss_kb(proc.pid))
            now = time.monotonic()
            if now >= next_beat:
                print(
                    f"  … {name}: {now - started:,.0f}s elapsed, {peak_kb / 1024:,.0f} MB peak RSS so far",
                    file=sys.stderr,
                    flush=True,
                )
                next_beat = now + heartbeat_s
            time.sleep(1.0)
    except KeyboardInterrupt:
        os.killpg(proc.pid, 2)  # the group we started: the benchmark cleans up on SIGINT
        proc.wait(30)
        raise
    return {
        "rc": proc.returncode or 0,
        "seconds": round(time.monotonic() - started, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }


def main() -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    only = set(sys.argv[1:])
    if not scripts:
        print("no benchmarks found")
        return 1
    heartbeat = float(os.environ.get("BENCH_HEARTBEAT_S", "15"))
    runs: dict[str, dict[str, float | int]] = json.loads(RUNS.read_text()) if RUNS.exists() else {}
    chosen = [s for s in scripts if not only or s.stem in only]
    failed = []
    started = time.monotonic()
    for i, script in enumerate(chosen, 1):
        print(f"\n### [{i}/{len(chosen)}] {script.stem}", flush=True)
        result = run_one(script.stem, heartbeat)
        runs[script.stem] = result
        RUNS.parent.mkdir(exist_ok=True)
        RUNS.write_text(json.dumps(runs, indent=2) + "\n")
        print(
            f"### {script.stem}: {result['seconds']}s, peak RSS {result['peak_rss_mb']} MB, rc {result['rc']}"
        )
        if result["rc"]:
            failed.append(script.stem)

    from benchmarks.report import main as report

    print()
    report()
    total = time.monotonic() - started
    print(f"\nall benchmarks: {total / 60:.1f} min (budget {BUDGET_S / 60:.0f} min)")
    if total > BUDGET_S:
        print(f"over the budget of {BUDGET_S / 60:.0f} min: shrink the BENCH_* sizes")
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
