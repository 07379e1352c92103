"""Prometheus metrics every consumer exports (one registry per process, labelled by group and topic)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONSUMED = Counter(
    "platform_consumer_records_consumed_total", "Records fetched from Kafka", ["group", "topic"]
)
STORED = Counter(
    "platform_consumer_records_stored_total",
    "Records written to the datastore and committed",
    ["group", "topic"],
)
FAILED = Counter(
    "platform_consumer_records_failed_total",
    "Records that failed permanently, by stage",
    ["group", "topic", "stage"],
)
DLQ = Counter("platform_consumer_dlq_total", "Records published to the dead-letter topic", ["group", "topic"])
RETRIES = Counter("platform_consumer_retries_total", "Transient write failures that were retried", ["group"])
REBALANCES = Counter("platform_consumer_rebalances_total", "Partition assignments received", ["group"])
COMMITS = Counter("platform_consumer_commits_total", "Offset commits, by outcome", ["group", "outcome"])
BATCH_SIZE = Histogram(
    "platform_consumer_batch_size",
    "Records per flushed batch",
    ["group"],
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
FLUSH_SECONDS = Histogram(
    "platform_consumer_flush_seconds",
    "Time to write and commit one batch",
    ["group"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LAG = Gauge(
    "platform_consumer_lag", "High watermark minus next offset to store", ["group", "topic", "partition"]
)
ASSIGNED = Gauge("platform_consumer_assigned_partitions", "Partitions currently assigned", ["group"])
PAUSED = Gauge("platform_consumer_paused", "1 while an operator holds fetching paused", ["group"])
BACKOFF = Gauge(
    "platform_consumer_backoff",
    "1 while a failed batch waits for its retry (every assigned partition paused meanwhile)",
    ["group"],
)
UP = Gauge("platform_consumer_running", "1 while the consumer loop runs", ["group"])
