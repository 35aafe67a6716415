#!/usr/bin/env bash
# Run the pytest suite (every tier but the kernel's, as `make test` runs it) N times while a busy
# loop keeps every core of the machine busy: a test that depends on the machine's speed shows
# up here rather than in CI.
#
# Usage: scripts/busy-suite.sh [N] [PYTEST ARGS...]
#   N           number of runs (default 5)
#   PYTEST ARGS passed to each run, e.g. a tier: scripts/busy-suite.sh 3 tests/scenarios
# Prints one line per run (passed or failed, duration, the failed test ids) and a final line;
# exits 1 if any run failed. Each run's full output stays in $BUSY_SUITE_LOGS (default: a new
# directory under /tmp, named at the start). The busy loops are killed when the script exits,
# however it exits.
set -uo pipefail
cd "$(dirname "$0")/.."

runs="${1:-5}"
[[ $# -gt 0 ]] && shift
if ! [[ "$runs" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [N] [PYTEST ARGS...]" >&2
    exit 2
fi
[[ -x .venv/bin/pytest ]] || { echo "busy-suite: no .venv: run scripts/setup.sh" >&2; exit 2; }

cores="$(nproc)"
hogs=()
logs="${BUSY_SUITE_LOGS:-$(mktemp -d /tmp/busy-suite.XXXXXX)}"
mkdir -p "$logs"
stop_hogs() {
    ((${#hogs[@]})) && kill "${hogs[@]}" 2>/dev/null
    wait "${hogs[@]}" 2>/dev/null
}
trap stop_hogs EXIT
trap 'exit 130' INT TERM
for _ in $(seq "$cores"); do
    bash -c 'while :; do :; done' &
    hogs+=($!)
done
echo "busy-suite: $runs runs of .venv/bin/pytest $*, with $cores busy loops on $cores cores; logs in $logs"

passed=0
for run in $(seq "$runs"); do
    log="$logs/run-$run.log"
    start=$(date +%s)
    .venv/bin/pytest -q -p no:cacheprovider "$@" >"$log" 2>&1
    rc=$?
    seconds=$(($(date +%s) - start))
    if [[ $rc -eq 0 ]]; then
        passed=$((passed + 1))
        echo "run $run/$runs: passed in ${seconds} s ($(tail -n1 "$log" | tr -d '='))"
    else
        failed="$(awk '/^(FAILED|ERROR) / {print $2}' "$log" | sort -u | paste -sd' ')"
        echo "run $run/$runs: failed (exit $rc) in ${seconds} s: ${failed:-see below}"
        [[ -n "$failed" ]] || tail -n 20 "$log"
    fi
done
echo "busy-suite: $passed of $runs runs passed with every core busy"
[[ $passed -eq $runs ]]
