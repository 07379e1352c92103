"""search-indexer: platform.messages.* → Elasticsearch (alias ``messages``), search API, rebuild by replay."""
