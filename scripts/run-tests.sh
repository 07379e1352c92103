#!/usr/bin/env bash
# `make test`: the whole suite. The fault-injection tests (tests/faults) spend most of their time waiting on
# private servers they start, stop and kill, so they run in a second pytest process next to the rest; the
# run fails if either fails, and pytest's "no tests collected" (exit 5) counts as a failure. With a path in
# the arguments (e.g. PYTEST_ARGS="services/notifier -q") it is one plain pytest run.
set -uo pipefail
VPY=${VPY:-.venv/bin/python}

no_tests() { echo "pytest collected no tests: failing"; exit 1; }

for arg in "$@"; do
  if [[ $arg != -* ]]; then
    "$VPY" -m pytest "$@"; rc=$?
    [ "$rc" -eq 5 ] && no_tests
    exit "$rc"
  fi
done

mkdir -p .devdata
log=.devdata/test-faults.log
"$VPY" -m pytest tests/faults -p no:cacheprovider "$@" >"$log" 2>&1 &
faults=$!
trap 'kill "$faults" 2>/dev/null' INT TERM
"$VPY" -m pytest --ignore=tests/faults "$@"; rc=$?
wait "$faults"; frc=$?
echo "---- tests/faults (ran in parallel with the rest; output also in $log)"
cat "$log"
echo "---- exit codes: tests/faults ${frc}, the rest ${rc}"
{ [ "$rc" -eq 5 ] || [ "$frc" -eq 5 ]; } && no_tests
[ "$rc" -ne 0 ] && exit "$rc"
exit "$frc"
