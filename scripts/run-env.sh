#!/usr/bin/env bash
# What `make run` gives every service: writes KEY=VALUE lines (the local servers' addresses) to $1
# (default .devdata/services.env), starting or reusing those servers first; LOG_JSON=false when run on a
# terminal (the services' output reaches it through honcho's pipes, so they cannot tell themselves).
# Credentials (scripts/dev_auth.py, next to $1): ADMIN_TOKEN, a user's API key (hashed into api-keys.json)
# and GATEWAY_AUTH=open, so the seeds' curl commands work without a token; both tokens are printed.
# The INTERNAL_TOKEN the gateway sends to the services (made once, kept next to $1 in internal-token).
# EXTERNAL_KAFKA=host:port: use that broker instead of the local one, which is then not started - e.g. a real
# Apache Kafka from `docker compose -f deploy/compose/compose.yaml up -d kafka kafka-init` (localhost:9092),
# for producers the local broker cannot serve (librdkafka / Java clients: docs/local-servers.md).
set -euo pipefail

py=${VPY:-.venv/bin/python}
out=${1:-.devdata/services.env}
servers=(mysql mongo elasticsearch)
if [[ -z ${EXTERNAL_KAFKA:-} ]]; then
  servers=(kafka "${servers[@]}")
fi
"$py" -m devservers up "${servers[@]}"
mkdir -p "$(dirname "$out")"
"$py" -m devservers env "${servers[@]}" > "$out"
# a person watching the terminal gets readable log lines (structlog's console renderer); piped or
# redirected output stays JSON, as in every deployment (LOG_JSON=true there)
if [[ -t 1 ]]; then
  echo "LOG_JSON=false" >> "$out"
fi
# the gateway's token for the services' state-changing endpoints (consumer control, deletes ...): one for all
token="$(dirname "$out")/internal-token"
if [[ ! -s $token ]]; then
  (umask 077 && "$py" -c "import secrets; print(secrets.token_urlsafe(24))" > "$token")
fi
echo "INTERNAL_TOKEN=$(cat "$token")" >> "$out"
if [[ -n ${EXTERNAL_KAFKA:-} ]]; then
  # a real broker: idempotent producers stay on (the services' default)
  printf 'KAFKA_BOOTSTRAP_SERVERS=%s\nKAFKA_BROKER=%s\n' "$EXTERNAL_KAFKA" "$EXTERNAL_KAFKA" >> "$out"
  echo "kafka: $EXTERNAL_KAFKA (EXTERNAL_KAFKA; the local broker was not started)"
fi
# the admin token, a user's API key (kept next to $out, the same every run) and GATEWAY_AUTH=open
"$py" scripts/dev_auth.py "$(dirname "$out")" >> "$out"
