"""Prometheus metrics of the notifier (the consumer's own come from consumer_runtime)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CREATED = Counter("notifier_notifications_created_total", "Notifications stored for the first time")
DUPLICATES = Counter(
    "notifier_notifications_duplicate_total", "Notifications already stored (redelivery or replay)"
)
MUTED = Counter("notifier_notifications_muted_total", "Mentions skipped because the user muted the channel")
PUBLISHED = Counter(
    "notifier_notifications_published_total",
    "Notifications published to platform.notifications.sent, by reason",
    ["reason"],
)
LIVE_SUBSCRIBERS = Gauge("notifier_stream_connections", "Open live stream connections")
LIVE_DELIVERED = Counter("notifier_stream_delivered_total", "Notifications written to live streams")
LIVE_OVERFLOWS = Counter(
    "notifier_stream_overflows_total", "Live queues that overflowed (the stream caught up from the store)"
)
TAIL_RECORDS = Counter(
    "notifier_tail_records_total", "Records read by the live tail, by outcome", ["outcome"]
)
READBACK = Counter(
    "notifier_publish_readbacks_total",
    "Read-backs of the sent topic before publishing an interrupted batch again, by outcome",
    ["outcome"],
)
