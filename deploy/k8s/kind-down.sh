#!/usr/bin/env bash
# Delete the kind cluster that kind-up.sh created (its volumes go with it).
set -euo pipefail
kind delete cluster --name "${KIND_CLUSTER:-kafka-platform}"
