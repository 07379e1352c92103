#!/usr/bin/env bash
# Create (or reuse) the kind cluster, install metrics-server (the gateway's HPA needs CPU metrics), build and
# load the five images tagged IMAGE_TAG, apply overlays/kind with that tag, restart what was rebuilt under an
# unchanged tag, wait for the rollouts and print the gateway URL. Run from anywhere (paths are relative to
# this file); `make kind-up` runs `make install` first, which puts kubectl in .venv/bin.
# Needs docker. kind (pinned to KIND_VERSION) is taken from PATH or .venv/bin, else built with
# `go install sigs.k8s.io/kind@KIND_VERSION` (Go modules) into .venv/bin.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cluster=${KIND_CLUSTER:-kafka-platform}
tag=${IMAGE_TAG:-0.1.0}
services=(issue-ingestor log-sink search-indexer notifier gateway)
kind_version=v0.29.0
tools_bin=${KIND_UP_BIN:-$root/.venv/bin}
kubectl=${KUBECTL:-$tools_bin/kubectl}

[[ -x $kubectl ]] || { echo "kind-up: $kubectl is missing: run make install (or make kind-up)" >&2; exit 1; }
command -v docker >/dev/null || { echo "kind-up: docker is not installed (kind runs its nodes in it)" >&2; exit 1; }
kind=$(command -v kind || true)
if [[ -z $kind && -x $tools_bin/kind ]]; then
  kind=$tools_bin/kind
fi
if [[ -z $kind ]]; then
  command -v go >/dev/null || {
    echo "kind-up: kind $kind_version is needed: put it on PATH, or install Go so this script can run" \
      "go install sigs.k8s.io/kind@$kind_version" >&2
    exit 1
  }
  echo "kind-up: building kind $kind_version into $tools_bin"
  GOBIN=$tools_bin go install "sigs.k8s.io/kind@$kind_version"
  kind=$tools_bin/kind
fi

# the node image is pinned by digest in kind-cluster.yaml
if ! "$kind" get clusters | grep -qx "$cluster"; then
  "$kind" create cluster --name "$cluster" --config "$here/kind-cluster.yaml"
fi
"$kubectl" config use-context "kind-$cluster" >/dev/null
"$kubectl" apply -k "$here/addons/metrics-server"

for service in "${services[@]}"; do
  docker build --build-arg "SERVICE=$service" -t "kafka-platform/$service:$tag" "$root"
  "$kind" load docker-image --name "$cluster" "kafka-platform/$service:$tag"
done

# IMAGE_TAG into the manifests: a throw-away kustomization over overlays/kind with the `images:` entries that
# `kustomize edit set image kafka-platform/<service>=kafka-platform/<service>:<tag>` writes (the committed
# overlay stays untouched, and no separate kustomize binary is needed: kubectl has kustomize built in)
# (kustomize refuses absolute paths to a base: the throw-away folder sits next to overlays/, git-ignored)
work=$(mktemp -d "$here/.kind-up.XXXXXX")
trap 'rm -rf "$work"' EXIT
{
  printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../overlays/kind\nimages:\n'
  for service in "${services[@]}"; do
    printf '  - name: kafka-platform/%s\n    newTag: "%s"\n' "$service" "$tag"
  done
} > "$work/kustomization.yaml"

# what runs now: a rebuilt image under the same tag changes nothing in the Deployment, so it is restarted
declare -A running
for service in "${services[@]}"; do
  running[$service]=$("$kubectl" get deployment -n platform "$service" --ignore-not-found \
    -o 'jsonpath={.spec.template.spec.containers[0].image}')
done

# Jobs are immutable: drop the finished topic Job so a changed kafka-config re-creates it
"$kubectl" delete job -n platform kafka-topics --ignore-not-found
"$kubectl" apply -k "$work"
for service in "${services[@]}"; do
  if [[ ${running[$service]} == "kafka-platform/$service:$tag" ]]; then
    "$kubectl" rollout restart -n platform "deployment/$service"
  fi
done

"$kubectl" rollout status -n kube-system deployment/metrics-server --timeout=300s
for sts in kafka mysql mongo elasticsearch; do
  "$kubectl" rollout status -n platform "statefulset/$sts" --timeout=600s
done
"$kubectl" wait -n platform --for=condition=complete job/kafka-topics --timeout=600s
for service in "${services[@]}"; do
  "$kubectl" rollout status -n platform "deployment/$service" --timeout=300s
done

echo "gateway: http://localhost:30080  (OpenAPI at /docs)"
echo "kafka (host producers): localhost:30092   elasticsearch: http://localhost:30200"
