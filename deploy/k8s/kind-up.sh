#!/usr/bin/env bash
# Create (or reuse) the kind cluster, build and load the five images, apply overlays/kind, wait for the
# rollouts and print the gateway URL. Needs docker, kind and kubectl on PATH (kubectl also comes from
# `make install`: .venv/bin/kubectl). Run from anywhere: paths are relative to this file.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cluster=${KIND_CLUSTER:-kafka-platform}
tag=${IMAGE_TAG:-0.1.0}
services=(issue-ingestor log-sink search-indexer notifier gateway)
kubectl=${KUBECTL:-$(command -v kubectl || echo "$root/.venv/bin/kubectl")}

for tool in docker kind; do
  command -v "$tool" >/dev/null || { echo "kind-up: $tool is not installed" >&2; exit 1; }
done

if ! kind get clusters | grep -qx "$cluster"; then
  kind create cluster --name "$cluster" --config "$here/kind-cluster.yaml"
fi
"$kubectl" config use-context "kind-$cluster" >/dev/null

for service in "${services[@]}"; do
  docker build --build-arg "SERVICE=$service" -t "kafka-platform/$service:$tag" "$root"
  kind load docker-image --name "$cluster" "kafka-platform/$service:$tag"
done

# Jobs are immutable: drop the finished topic Job so a changed kafka-config re-creates it
"$kubectl" delete job -n platform kafka-topics --ignore-not-found
"$kubectl" apply -k "$here/overlays/kind"

for sts in kafka mysql mongo elasticsearch; do
  "$kubectl" rollout status -n platform "statefulset/$sts" --timeout=600s
done
"$kubectl" wait -n platform --for=condition=complete job/kafka-topics --timeout=600s
for service in "${services[@]}"; do
  "$kubectl" rollout status -n platform "deployment/$service" --timeout=300s
done

echo "gateway: http://localhost:30080  (OpenAPI at /docs)"
echo "kafka (host producers): localhost:30092   elasticsearch: http://localhost:30200"
