"""Send realistic factory issue events to ``chatbot-issue-events`` (the seed's test producer, grown up).

    .venv/bin/python scripts/kafka_test_producer.py                      # 20 issues to the local broker
    .venv/bin/python scripts/kafka_test_producer.py --count 500 --rate 50 --solved-ratio 0.5
    .venv/bin/python scripts/kafka_test_producer.py --invalid 3           # + 3 bad events (-> the DLQ)
    .venv/bin/python scripts/kafka_test_producer.py --dry-run | head      # print the JSON, send nothing

Events use every processType (장애접수, 정기점검) and modeType (프레스, 용접기, 도장설비,
차량조립설비), Korean descriptions, and, for a share of the issues, a later ``isSolved: true``
follow-up (some also reopened). Keys are issue ids, so one issue stays in one partition.
The broker connection comes from the services' environment: KAFKA_BOOTSTRAP_SERVERS,
KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME/PASSWORD, KAFKA_ENABLE_IDEMPOTENCE,
KAFKA_TOPIC_CHATBOT_ISSUES; so it works against the local broker, Apache Kafka, Azure Event Hubs
(SASL_SSL + PLAIN) or any SCRAM cluster. Variables not in the environment are read from the file `make run`
gives the services (.devdata/services.env), so it talks to the same broker. A broker that refuses an
idempotent producer (the local Tansu answers InitProducerId with UnknownError) is detected: the events are
sent without idempotence, saying so (--no-idempotence skips the attempt). The topic, if missing, is created
with the platform's partition count (KAFKA_TOPIC_PARTITIONS), not the broker's auto-create default.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from consumer_runtime import KafkaSettings, load_settings
from consumer_runtime.topics import ensure_topics
from platform_events import CHATBOT_ISSUES, FactoryIssueEvent, ModeType, ProcessType, encode

PREFIX = {
    ModeType.PRESS: "PRESS",
    ModeType.WELDER: "WELD",
    ModeType.PAINTING: "PAINT",
    ModeType.VEHICLE_ASSEMBLY: "ASSY",
}
PROBLEMS = {
    ModeType.PRESS: [
        "100톤 프레스 유압 이상",
        "금형 정렬 불량",
        "슬라이드 과부하 경보",
        "안전 광커튼 오작동",
    ],
    ModeType.WELDER: ["용접 전류 불안정", "팁 마모로 스패터 증가", "냉각수 유량 부족", "로봇 용접 경로 이탈"],
    ModeType.PAINTING: [
        "도장 부스 온도 이상",
        "도막 두께 편차 발생",
        "스프레이 건 막힘",
        "배기 팬 진동 증가",
    ],
    ModeType.VEHICLE_ASSEMBLY: ["컨베이어 정지", "체결 토크 불량", "AGV 통신 끊김", "비전 검사 카메라 오류"],
}
INSPECTIONS = ["정기 점검 - 윤활 상태 확인", "월간 안전 점검", "센서 교정 예정", "예방 정비 작업"]
INVALID = [
    b'{"issue": "BROKEN_001", "processType": ',  # not JSON
    b'["PRESS_001", "\xec\x9e\xa5\xec\x95\xa0\xec\xa0\x91\xec\x88\x98"]',  # not an object
    '{"issue": "BAD_001", "processType": "수리", "modeType": "프레스", "modeLogId": "L"}'.encode(),
    '{"issue": "BAD_002", "processType": "장애접수", "modeType": "로봇", "modeLogId": "L"}'.encode(),
    '{"issue": "BAD_003", "processType": "장애접수", "modeType": "프레스"}'.encode(),
    '{"issue": "BAD_004", "processType": "장애접수", "modeType": "프레스", "modeLogId": "L", '
    '"isSolved": "yes"}'.encode(),
]


def build_events(
    count: int, solved_ratio: float, reopen_ratio: float, rng: random.Random, now: datetime | None = None
) -> list[FactoryIssueEvent]:
    """``count`` issues; each is reported, some solved later, a few of those reopened. Time-ordered, and
    all in the past: the last event is at ``now`` (the services dead-letter event times more than
    ``MAX_CLOCK_SKEW`` ahead of their clock, so a follow-up hours after a recent report would never land)."""
    # first the story of each issue as offsets from the first report, then the whole of it placed before now
    stories: list[tuple[int, ModeType, ProcessType, int, str, list[tuple[timedelta, int]]]] = []
    for i in range(count):
        mode = list(ModeType)[i % len(ModeType)]
        process = ProcessType.FAILURE_REPORT if rng.random() < 0.7 else ProcessType.SCHEDULED_INSPECTION
        line = rng.randint(1, 9)
        at = timedelta(minutes=i, seconds=rng.randint(0, 59), milliseconds=rng.randint(0, 999))
        text = rng.choice(PROBLEMS[mode] if process is ProcessType.FAILURE_REPORT else INSPECTIONS)
        steps = [(at, 0)]  # 0 reported, 1 solved, 2 reopened
        if rng.random() < solved_ratio:
            solved_at = at + timedelta(minutes=rng.randint(5, 240))
            steps.append((solved_at, 1))
            if rng.random() < reopen_ratio:
                steps.append((solved_at + timedelta(minutes=rng.randint(10, 120)), 2))
        stories.append((i, mode, process, line, text, steps))
    latest = max((at for *_, steps in stories for at, _ in steps), default=timedelta(0))
    start = (now or datetime.now(UTC)).replace(microsecond=0) - latest
    events: list[tuple[datetime, int, FactoryIssueEvent]] = []
    for i, mode, process, line, text, steps in stories:
        reported = start + steps[0][0]
        base = FactoryIssueEvent(
            issue=f"{PREFIX[mode]}_{line:03d}_{reported.strftime('%Y%m%d')}_{i + 1:03d}",
            process_type=process,
            mode_type=mode,
            mode_log_id=f"{PREFIX[mode]}_LOG_{line:03d}_{i + 1:05d}",
            description=text,
            is_solved=False,
            timestamp=reported,
        )
        events.append((reported, 0, base))
        for at, step in steps[1:]:
            update: dict[str, object] = {"timestamp": start + at}
            if step == 1:
                update |= {"is_solved": True, "description": f"{text} - 조치 완료"}
            else:
                update |= {"description": f"{text} - 재발생"}
            events.append((start + at, step, base.model_copy(update=update)))
    events.sort(key=lambda e: (e[0], e[1]))
    return [e for _, _, e in events]


#: the file `make run` writes for the services (scripts/run-env.sh): the same broker and producer settings
SERVICES_ENV = Path(__file__).resolve().parents[1] / ".devdata" / "services.env"
FROM_FILE = ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_ENABLE_IDEMPOTENCE", "KAFKA_TOPIC_PARTITIONS")


def settings_file_values(path: Path = SERVICES_ENV) -> dict[str, str]:
    """KEY=VALUE lines of ``path`` that the environment does not set (only the broker's settings)."""
    if not path.is_file():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() in FROM_FILE and key.strip() not in os.environ:
            values[key.strip()] = value.strip()
    return values


async def start_producer(settings: KafkaSettings) -> AIOKafkaProducer:
    """A started producer; idempotent unless the broker refuses that (then without, saying so)."""
    producer = AIOKafkaProducer(**settings.producer_kwargs())
    try:
        await producer.start()
        return producer
    except KafkaError as exc:
        await producer.stop()
        if not settings.kafka_enable_idempotence:
            raise
        print(
            f"note: the broker at {settings.kafka_bootstrap_servers} refused an idempotent producer "
            f"({type(exc).__name__}; the local broker lacks support): sending without idempotence "
            "(--no-idempotence or KAFKA_ENABLE_IDEMPOTENCE=false skips this attempt)",
            file=sys.stderr,
        )
    producer = AIOKafkaProducer(**{**settings.producer_kwargs(), "enable_idempotence": False})
    await producer.start()
    return producer


async def send(
    settings: KafkaSettings, topic: str, values: list[tuple[bytes, bytes | None]], rate: float
) -> None:
    if settings.kafka_auto_create_topics:
        await ensure_topics(settings, [topic])  # the platform's partition count, not the broker's default
    producer = await start_producer(settings)
    try:
        futures = []
        started = time.monotonic()
        for n, (value, key) in enumerate(values):
            if rate > 0:
                delay = started + n / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            futures.append(await producer.send(topic, value=value, key=key))
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    parts: dict[int, int] = {}
    for md in metas:
        parts[md.partition] = parts.get(md.partition, 0) + 1
    print(
        f"sent {len(metas)} events to {topic} on {settings.kafka_bootstrap_servers} (per partition: {parts})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bootstrap", help="overrides KAFKA_BOOTSTRAP_SERVERS (default localhost:9092)")
    parser.add_argument("--topic", default=os.environ.get("KAFKA_TOPIC_CHATBOT_ISSUES", CHATBOT_ISSUES.name))
    parser.add_argument("--count", type=int, default=20, help="number of issues (default 20)")
    parser.add_argument("--solved-ratio", type=float, default=0.5, help="share of issues solved later")
    parser.add_argument("--reopen-ratio", type=float, default=0.2, help="share of solved issues reopened")
    parser.add_argument("--invalid", type=int, default=0, help="also send this many invalid events")
    parser.add_argument("--rate", type=float, default=0, help="events per second (0 = as fast as possible)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (repeatable runs)")
    parser.add_argument(
        "--no-idempotence",
        action="store_true",
        help="for brokers without idempotent producers (the local Tansu); = KAFKA_ENABLE_IDEMPOTENCE=false",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the events as JSON lines, send nothing")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    events = build_events(args.count, args.solved_ratio, args.reopen_ratio, rng)
    values: list[tuple[bytes, bytes | None]] = [(encode(e), e.issue.encode()) for e in events]
    for i in range(args.invalid):
        values.insert(rng.randint(0, len(values)), (INVALID[i % len(INVALID)], None))
    if args.dry_run:
        try:
            for value, _ in values:
                sys.stdout.write(value.decode("utf-8", "replace") + "\n")
            sys.stdout.flush()
        except BrokenPipeError:  # `--dry-run | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    overrides: dict[str, object] = {"kafka_bootstrap_servers": args.bootstrap} if args.bootstrap else {}
    if not args.bootstrap:
        from_file = settings_file_values()
        if from_file:
            print(f"settings from {SERVICES_ENV} (as make run): {from_file}", file=sys.stderr)
        overrides.update({k.lower(): v for k, v in from_file.items()})
    if args.no_idempotence:
        overrides["kafka_enable_idempotence"] = False
    if "kafka_bootstrap_servers" not in overrides and "KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
        overrides["kafka_bootstrap_servers"] = "localhost:9092"
    settings = load_settings(KafkaSettings, **overrides)
    try:
        asyncio.run(send(settings, args.topic, values, args.rate))
    except (KafkaError, OSError) as exc:
        print(
            f"error: could not send to {args.topic} on {settings.kafka_bootstrap_servers}: "
            f"{type(exc).__name__}: {exc}\n"
            "  is the broker running? `make infra-up` starts the local one (`make infra-status` shows it);\n"
            "  another broker: --bootstrap host:port or KAFKA_BOOTSTRAP_SERVERS (+ KAFKA_SECURITY_PROTOCOL,\n"
            "  KAFKA_SASL_* for a secured one); a broker without idempotent producers: --no-idempotence",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
