"""Create the topics a service needs (and their dead-letter topics) when they are missing.

**Retention rule.** The message topics (``platform.messages.*``, not their ``.dlq``) are the event log the
search index is rebuilt from, so they are created with ``retention.ms=-1`` (kept forever): with the broker
default (7 days) a rebuild after three months would replay one week. Every other topic gets the broker
default. Topics that already exist are left as they are (see ``topic_configs_for``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any, Final

from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from consumer_runtime.kafka_clients import start_admin
from consumer_runtime.logging import get_logger
from consumer_runtime.settings import KafkaClientSettings

log = get_logger(__name__)

#: Topics whose whole history must be kept (the event log a rebuild replays), by name prefix.
KEEP_FOREVER_PREFIXES: Final = ("platform.messages.",)
KEEP_FOREVER_CONFIGS: Final[Mapping[str, str]] = {"retention.ms": "-1"}


def topic_configs_for(name: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Topic configs ``name`` is created with: ``retention.ms=-1`` for the message topics (not their
    dead-letter topics), then ``extra`` on top."""
    configs: dict[str, str] = {}
    if name.startswith(KEEP_FOREVER_PREFIXES) and not name.endswith(".dlq"):
        configs.update(KEEP_FOREVER_CONFIGS)
    configs.update(extra or {})
    return configs


async def ensure_topics(
    settings: KafkaClientSettings,
    names: Iterable[str],
    *,
    partitions: int | None = None,
    configs: dict[str, str] | None = None,
) -> list[str]:
    """Create every missing topic of ``names``; returns the ones created. Safe to race with other replicas."""
    wanted = list(dict.fromkeys(names))
    admin = await start_admin(settings, request_timeout_ms=15_000)
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        await _report_partition_counts(admin, [n for n in wanted if n in existing], settings, partitions)
        if not missing:
            return []
        new = [
            NewTopic(
                name=n,
                num_partitions=partitions or settings.kafka_topic_partitions,
                replication_factor=settings.kafka_topic_replication,
                topic_configs=topic_configs_for(n, configs),
            )
            for n in missing
        ]
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(new)
        log.info(
            "topics created", topics=missing, configs={n: topic_configs_for(n, configs) for n in missing}
        )
        return missing
    finally:
        await admin.close()


async def partition_counts(admin: Any, names: list[str]) -> dict[str, int]:
    """Partitions of each existing topic of ``names``."""
    if not names:
        return {}
    described = await admin.describe_topics(names)
    return {d["topic"]: len(d.get("partitions") or []) for d in described if not d.get("error_code")}


async def _report_partition_counts(
    admin: Any, names: list[str], settings: KafkaClientSettings, partitions: int | None
) -> dict[str, int]:
    """Warn about existing topics whose partition count is not the platform's (e.g. auto-created by a stray
    producer with the broker's default); returns them with their count. Never fails the caller."""
    want = partitions or settings.kafka_topic_partitions
    try:
        counts = await partition_counts(admin, names)
    except Exception as exc:  # a report only
        log.warning("could not check partition counts", error=repr(exc))
        return {}
    differing = {n: c for n, c in counts.items() if c != want}
    if differing:
        log.warning(
            "topics have another partition count than KAFKA_TOPIC_PARTITIONS (created elsewhere, e.g. "
            "auto-created by a producer); consumers work, but per-key ordering/parallelism differ: "
            "recreate them or add partitions (kafka-topics --alter)",
            topics=differing,
            expected=want,
        )
    return differing
