"""Prometheus metrics of the search indexer (the consumer's own come from consumer_runtime)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ITEMS = Counter(
    "search_indexer_documents_total",
    "Document writes by outcome (ok, unchanged, conflict, retry, permanent)",
    ["outcome"],
)
BULK_SECONDS = Histogram(
    "search_indexer_bulk_seconds",
    "Duration of one bulk request",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SEARCH_SECONDS = Histogram(
    "search_indexer_search_seconds",
    "Duration of one search request to Elasticsearch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
REBUILD_REPLAYED = Gauge("search_indexer_rebuild_replayed_events", "Events replayed by the current rebuild")
REBUILD_TOTAL = Gauge("search_indexer_rebuild_total_events", "Events the current rebuild has to replay")
REBUILDS = Counter("search_indexer_rebuilds_total", "Finished rebuilds by outcome", ["outcome"])
