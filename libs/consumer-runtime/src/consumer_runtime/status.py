"""The runner's state and status as types: what ``/consumer/status`` answers and what other modules read."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class State(StrEnum):
    """What the consumer is doing, as operators see it.

    ``running``/``paused``/``retrying`` are the connected states: ``retrying`` while a batch waits for its
    retry after a transient datastore failure, ``paused`` while an operator holds it. ``reconnecting``:
    the Kafka client failed and is rebuilt with backoff. ``disabled``: ``KAFKA_ENABLED=false``.
    """

    DISABLED = "disabled"
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    RETRYING = "retrying"
    RECONNECTING = "reconnecting"
    STOPPING = "stopping"


#: who holds the partitions paused: an operator (until resumed) or the pending batch awaiting its retry
PauseHolder = Literal["operator", "backoff"]
Desired = Literal["running", "stopped"]
Action = Literal["start", "stop", "pause", "resume", "restart"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class PartitionStatus(_Model):
    topic: str
    partition: int
    committed: int | None = Field(description="next offset committed by this group")
    position: int | None = Field(description="next offset this member fetches")
    highwater: int | None = Field(description="log end offset seen in the last fetch")
    lag: int | None = Field(description="highwater minus committed (or position before the first commit)")


class Counts(_Model):
    consumed: int = 0
    stored: int = 0
    dead_lettered: int = 0
    retries: int = 0
    rebalances: int = 0
    batches: int = 0
    commits: int = 0
    #: results of batches that were dropped (revoke, stop, reconnect) before their write finished
    stale_results_ignored: int = 0


class LastBatch(_Model):
    records: int
    stored: int
    failed: int
    ms: float
    at: float


class LastError(_Model):
    stage: str
    error_class: str
    message: str
    at: float = Field(description="when it happened (epoch seconds)")
    recovered_at: float | None = Field(
        None,
        description="when the consumer recovered from it (the next stored batch, or the reconnect after a "
        "kafka error; epoch seconds); null while it lasts",
    )


class ConsumerStatus(_Model):
    """One replica's consumer, as ``GET /consumer/status`` answers it."""

    name: str
    group: str
    topics: list[str]
    state: State
    desired: Desired = Field(description="what start/stop/restart asked for last; the loop converges to it")
    paused: bool = Field(description="an operator paused fetching (survives rebalances, until resumed)")
    paused_by: list[PauseHolder] = Field(description="who holds the partitions paused right now")
    enabled: bool
    ready: bool = Field(description="the consumer can make progress (see `not_ready`)")
    not_ready: str | None = Field(None, description="why progress is impossible now")
    assignment: list[PartitionStatus]
    lag: int
    counts: Counts
    buffered: int = Field(description="records fetched but not yet committed")
    pending_attempts: int = Field(0, description="failed attempts of the batch waiting for its retry")
    last_batch: LastBatch | None
    last_error: LastError | None
    started_at: float | None


class ControlAck(ConsumerStatus):
    """The immediate answer to a control call: the status right now, plus the command taken and the state
    it leads to. A start, stop or restart runs in the background; its progress shows in ``state``."""

    action: Action
    leads_to: State
