"""Settings of the notifier (env names in README.md); a bad value stops the start naming the variable."""

from __future__ import annotations

from consumer_runtime import ServiceSettings
from platform_events import GROUP_NOTIFICATION_SERVICE
from pydantic import Field


class Settings(ServiceSettings):
    """Kafka + HTTP settings of the shared runtime, plus MongoDB and the live stream."""

    kafka_consumer_group: str = Field(GROUP_NOTIFICATION_SERVICE, min_length=1)
    http_port: int = Field(8104, ge=1, le=65535)
    # Live delivery wants small batches at low rates (a full batch still flushes at once under load).
    mq_batch_timeout_ms: int = Field(100, ge=1, le=600_000)

    mongo_url: str = Field("mongodb://127.0.0.1:27017", min_length=1)
    notifier_mongo_db: str = Field("notifications", min_length=1, max_length=60, pattern=r"^[A-Za-z0-9_-]+$")
    #: Every MongoDB operation ends within this long (connect, socket reads, server-side maxTimeMS).
    mongo_timeout_ms: int = Field(5_000, ge=100, le=600_000)

    notification_preview_chars: int = Field(200, ge=1, le=40_000, description="body = content preview")
    notification_title: str = Field("새 멘션", min_length=1, max_length=256)

    stream_queue_size: int = Field(1000, ge=1, description="per connection; overflow → catch-up from store")
    stream_resume_overlap_ms: int = Field(
        0,
        ge=0,
        le=3_600_000,
        description="legacy resume ids only (a notification id or seq of the earlier stream): also re-send "
        "this window before it; cursors (every id the stream sends now) are exact and need none",
    )
    stream_ping_s: float = Field(15.0, gt=0)
    stream_page_size: int = Field(500, ge=1, le=10_000)
    live_tail_enabled: bool = True
