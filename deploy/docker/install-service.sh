#!/usr/bin/env bash
# Install one service into a fresh virtualenv, from the repo's hash-pinned lock only:
#   deploy/docker/install-service.sh <service-dir> <venv-dir> [python]
# 1. the service's slice of requirements/lock.txt (lock_subset.py) is synced with --require-hashes;
# 2. the service and the workspace libraries it uses are built as wheels by hatchling (itself installed,
#    hash-pinned, into a throw-away build venv) and installed without dependencies;
# 3. bin/service starts the service (`python -m <package>`).
# The Dockerfile runs exactly this, and tests/deploy re-run it to prove the slice is complete.
set -euo pipefail

service=${1:?usage: install-service.sh <service-dir> <venv-dir> [python]}
venv=${2:?usage: install-service.sh <service-dir> <venv-dir> [python]}
python=${3:-python3}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
module=${service//-/_}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [[ ! -f "$root/services/$service/src/$module/__init__.py" ]]; then
  echo "install-service: services/$service/src/$module is not a package" >&2
  exit 2
fi

"$python" "$root/deploy/docker/lock_subset.py" --root "$root" --service "$service" \
  --out "$work/requirements.txt" --members-out "$work/members.txt"
"$python" "$root/deploy/docker/lock_subset.py" --root "$root" --package hatchling --out "$work/build.txt"

uv venv --quiet --python "$python" "$venv"
uv pip sync --quiet --python "$venv/bin/python" --require-hashes "$work/requirements.txt"

uv venv --quiet --python "$python" "$work/build"
uv pip sync --quiet --python "$work/build/bin/python" --require-hashes "$work/build.txt"
while read -r member; do
  (cd "$root/$member" && "$work/build/bin/python" -m hatchling build -t wheel -d "$work/wheels" >/dev/null)
done <"$work/members.txt"
uv pip install --quiet --python "$venv/bin/python" --no-deps --no-index "$work"/wheels/*.whl

cat >"$venv/bin/service" <<EOF
#!$venv/bin/python
import runpy

runpy.run_module("$module", run_name="__main__", alter_sys=True)
EOF
chmod 0755 "$venv/bin/service"
