"""The two things every benchmark hands the report in the same shape: its headline figures and its targets.

    summary = {
        "headline": headline(service_eps=a, raw_eps=b, naive_eps=c, p50_s=..., p99_s=..., latency_of="..."),
        "targets": targets(
            Target("× raw bulk", a / b, ">=", 0.7),
            Target("p99 produce→stored", p99, "<=", 0.5, unit="s", why_missed="..."),
        ),
        ...
    }

``python -m benchmarks.report`` reads only these two keys (plus wall time and peak RSS from the runner), so a
benchmark's other summary keys are free-form.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Target:
    name: str
    measured: float
    op: Literal[">=", "<="]
    goal: float
    unit: str = ""  # "", "s", "ms", "µs"
    why_missed: str = ""  # what limits the figure when the target is missed (shown only then)
    # (lowest, highest) of the figure over the run's rounds, when it was measured in rounds: a target the
    # rounds disagree on (some meet it, some miss it) is not decided by the run, whatever the overall figure
    spread: tuple[float, float] | None = None

    def _meets(self, value: float) -> bool:
        return value >= self.goal if self.op == ">=" else value <= self.goal

    @property
    def met(self) -> bool:
        return self._meets(self.measured)

    @property
    def decided(self) -> bool:
        return self.spread is None or self._meets(self.spread[0]) == self._meets(self.spread[1])

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met, "decided": self.decided}


def targets(*items: Target) -> list[dict[str, Any]]:
    return [t.as_dict() for t in items]


def throughput_targets(
    service: float,
    raw: float,
    naive: float,
    *,
    naive_goal: float,
    bulk: str,
    single: str,
    raw_gap: str = "",
) -> list[Target]:
    """The two throughput targets every sink shares: ≥ 0.7× the server's raw bulk rate (``raw_gap``: what
    the service does per batch that the raw case does not), and ``naive_goal``× the one-write-per-event rate
    (a miss explained by :func:`naive_ceiling`)."""
    return [
        Target("× raw bulk", service / raw, ">=", 0.7, why_missed=raw_gap),
        Target(
            "× naive",
            service / naive,
            ">=",
            naive_goal,
            why_missed=naive_ceiling(service, raw, naive, naive_goal, bulk, single),
        ),
    ]


def naive_ceiling(service: float, raw: float, naive: float, goal: float, bulk: str, single: str) -> str:
    """Why "× naive" misses: how far the server's own bulk rate is above its one-at-a-time rate."""
    ratio = raw / naive
    if ratio < goal:
        return (
            f"raw {bulk} is itself only {ratio:.1f}× {single} on this server, so no client reaches "
            f"{goal:g}× here (the service runs at {service / raw:.2f}× raw)"
        )
    return (
        f"raw {bulk} is {ratio:.1f}× {single} on this server: {goal:g}× naive would need "
        f"{goal / ratio:.2f}× raw bulk, the service runs at {service / raw:.2f}× (consume, decode, commit "
        "and the server share 2 cores)"
    )


def headline(
    *,
    service_eps: float | None = None,
    raw_eps: float | None = None,
    naive_eps: float | None = None,
    p50_s: float | None = None,
    p99_s: float | None = None,
    latency_of: str = "",
    unit: str = "events",
) -> dict[str, Any]:
    """Throughput of the service's own pipeline, of raw bulk writes of the same documents to the same server
    and of one write per event (all per second, in ``unit``), and the latency percentiles (seconds)."""
    return {
        "service_eps": service_eps,
        "raw_eps": raw_eps,
        "naive_eps": naive_eps,
        "p50_s": p50_s,
        "p99_s": p99_s,
        "latency_of": latency_of,
        "unit": unit,
    }


def run_defaults() -> tuple[int, int, int]:
    """(MQ_BATCH_SIZE, MQ_MAX_BATCH, KAFKA_MAX_POLL_RECORDS) a service gets from `make run`: the runtime's
    defaults (or what the environment sets, as `make run` would pass it on)."""
    from consumer_runtime.settings import KafkaSettings

    s = KafkaSettings()
    return s.mq_batch_size, s.mq_max_batch, s.kafka_max_poll_records


def raw_batch() -> int:
    """The bulk size of the raw baselines: the largest batch the runtime writes at its defaults."""
    size, max_batch, _ = run_defaults()
    return max(size, max_batch)


def backlog(
    *,
    events: int,
    service_eps: float,
    raw_same_eps: float,
    raw_minimal_eps: float,
    batches: int,
    how: str,
) -> dict[str, Any]:
    """The summary of a sink's backlog drain at the `make run` defaults, with its two raw baselines (the
    report's "Sinks at the make run defaults" table)."""
    size, max_batch, poll = run_defaults()
    return {
        "events": events,
        "service_eps": service_eps,
        "raw_same_eps": raw_same_eps,
        "raw_minimal_eps": raw_minimal_eps,
        "batches": batches,
        "mean_batch": events / batches if batches else None,
        "defaults": {"MQ_BATCH_SIZE": size, "MQ_MAX_BATCH": max_batch, "KAFKA_MAX_POLL_RECORDS": poll},
        "raw_batch": raw_batch(),
        "how": how,
    }


def backlog_targets(
    service: float,
    raw_same: float,
    raw_minimal: float,
    *,
    minimal_goal: float,
    same_gap: str = "",
    minimal_gap: str = "",
) -> list[Target]:
    """Issue 19: at the defaults, ≥ 0.9× raw bulk into the same schema; a stated ratio to the minimal one."""
    return [
        Target("× raw bulk, same schema (defaults)", service / raw_same, ">=", 0.9, why_missed=same_gap),
        Target(
            "× raw bulk, minimal schema (defaults)",
            service / raw_minimal,
            ">=",
            minimal_goal,
            why_missed=minimal_gap
            or (
                f"the schema itself: raw bulk into it runs at {raw_same / raw_minimal:.2f}× the minimal one, "
                f"and the service at {service / raw_same:.2f}× that"
            ),
        ),
    ]
