"""Create the topics a service needs (and their dead-letter topics) when they are missing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from consumer_runtime.logging import get_logger
from consumer_runtime.settings import KafkaSettings

log = get_logger(__name__)


async def ensure_topics(
    settings: KafkaSettings,
    names: Iterable[str],
    *,
    partitions: int | None = None,
    configs: dict[str, str] | None = None,
) -> list[str]:
    """Create every missing topic of ``names``; returns the ones created. Safe to race with other replicas."""
    wanted = list(dict.fromkeys(names))
    admin = AIOKafkaAdminClient(**settings.client_kwargs(), request_timeout_ms=15_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        if not missing:
            return []
        new = [
            NewTopic(
                name=n,
                num_partitions=partitions or settings.kafka_topic_partitions,
                replication_factor=settings.kafka_topic_replication,
                topic_configs=configs or {},
            )
            for n in missing
        ]
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(new)
        log.info("topics created", topics=missing)
        return missing
    finally:
        await admin.close()
