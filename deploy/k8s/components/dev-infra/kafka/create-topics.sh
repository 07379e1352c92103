#!/usr/bin/env bash
# Create the platform's topics if they are missing: every topic of docs/contracts.md, `<topic>.dlq` for each
# consumed topic, and the compacted control topic. Names, partitions and replication come from the
# kafka-config env (same file as the services read), so the topics always match what the services
# subscribe to. Idempotent; waits for Kafka.
# Used by the kafka-topics Job (components/dev-infra) and the kafka-init service (deploy/compose).
set -euo pipefail

bin=${KAFKA_BIN:-/opt/kafka/bin}
bootstrap=${KAFKA_BOOTSTRAP_SERVERS:?KAFKA_BOOTSTRAP_SERVERS is not set}
partitions=${KAFKA_TOPIC_PARTITIONS:?KAFKA_TOPIC_PARTITIONS is not set}
replication=${KAFKA_TOPIC_REPLICATION:?KAFKA_TOPIC_REPLICATION is not set}
consumed=(
  "${KAFKA_TOPIC_CHATBOT_ISSUES:?}"
  "${KAFKA_LOG_TOPIC:?}"
  "${KAFKA_TOPIC_MESSAGES_CREATED:?}"
  "${KAFKA_TOPIC_MESSAGES_UPDATED:?}"
  "${KAFKA_TOPIC_MESSAGES_DELETED:?}"
)
control=${KAFKA_CONTROL_TOPIC:?}
produced_only=(
  "${KAFKA_TOPIC_NOTIFICATIONS_SENT:?}"
  "${KAFKA_TOPIC_USERS_ACTIVITY:?}"
)
# kept forever (retention.ms=-1), as components/kafka-topics states for the cloud: the message topics (the
# search index is rebuilt by replaying them), the activity log, and every DLQ (below)
forever=(
  "${KAFKA_TOPIC_MESSAGES_CREATED:?}"
  "${KAFKA_TOPIC_MESSAGES_UPDATED:?}"
  "${KAFKA_TOPIC_MESSAGES_DELETED:?}"
  "${KAFKA_TOPIC_USERS_ACTIVITY:?}"
)

for attempt in $(seq 1 60); do
  if "$bin/kafka-topics.sh" --bootstrap-server "$bootstrap" --list >/dev/null 2>&1; then
    break
  fi
  if [[ $attempt -eq 60 ]]; then
    echo "kafka at $bootstrap did not answer" >&2
    exit 1
  fi
  echo "waiting for kafka at $bootstrap ($attempt/60)"
  sleep 5
done

topics=("${consumed[@]}" "${produced_only[@]}")
for topic in "${consumed[@]}"; do
  topics+=("$topic.dlq")
done
for topic in "${topics[@]}"; do
  retention=604800000
  if [[ $topic == *.dlq ]] || printf '%s\n' "${forever[@]}" | grep -qxF "$topic"; then
    retention=-1
  fi
  "$bin/kafka-topics.sh" --bootstrap-server "$bootstrap" --create --if-not-exists \
    --topic "$topic" --partitions "$partitions" --replication-factor "$replication" \
    --config "retention.ms=$retention"
done
# Retention rule: the message topics are the event log the search index is rebuilt from, so they keep
# everything (retention.ms=-1). Set with --alter as well, so topics created earlier with the broker default
# (7 days) get it too. Their .dlq topics keep the default.
for topic in "${KAFKA_TOPIC_MESSAGES_CREATED}" "${KAFKA_TOPIC_MESSAGES_UPDATED}" "${KAFKA_TOPIC_MESSAGES_DELETED}"; do
  "$bin/kafka-configs.sh" --bootstrap-server "$bootstrap" --alter --entity-type topics \
    --entity-name "$topic" --add-config retention.ms=-1
done
# the control topic keeps the latest command per service: one partition, compacted
"$bin/kafka-topics.sh" --bootstrap-server "$bootstrap" --create --if-not-exists \
  --topic "$control" --partitions 1 --replication-factor "$replication" --config cleanup.policy=compact
"$bin/kafka-topics.sh" --bootstrap-server "$bootstrap" --describe --topic '.*' | grep -E '^Topic:' || true
echo "topics ready: ${topics[*]} $control"
