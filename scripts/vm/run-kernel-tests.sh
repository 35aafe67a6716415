#!/usr/bin/env bash
# Run the real-kernel test tier (pytest -m kernel tests/kernel) inside a QEMU VM booted
# with virtme-ng on the Debian generic kernel prepared by scripts/vm/setup.sh.
#
# Usage:
#   scripts/vm/run-kernel-tests.sh [pytest args...]      # the kernel tests
#   scripts/vm/run-kernel-tests.sh --bench [bench args]  # bench/kernel_flush.py [bench args], then
#                                                         # bench/kernel_scale.py, instead
#
# Exit codes: pytest's (or the benchmark's) exit code from inside the guest;
#   77  the tier cannot run here (no QEMU, no virtme-ng, no prepared kernel, not root,
#       or the VM failed to boot): treat as "skipped"; the reason is printed, and written to
#       $TIER_SKIP_REASON when that is set (scripts/test.sh reads it).
#   1   also when the guest started the tests but they did not finish within VM_TIMEOUT.
# Acceleration: KVM when /dev/kvm is usable and a short probe VM boots with it (QEMU's
#   `-cpu host` can fail on a nested or restricted host, e.g. with an MSR error); otherwise TCG
#   (full emulation, several times slower), with the reason printed.
# Environment: VENV (default <repo>/.venv), VM_CACHE (default <repo>/.cache/vm),
#   VM_RWDIR (default <repo>/.cache/vm/results), VM_MEMORY (default 2G), VM_CPUS (default 2),
#   VM_TIMEOUT seconds for the whole VM run (default 1200), VM_ACCEL (kvm or tcg: no probe),
#   VM_PROBE_TIMEOUT seconds for the KVM probe boot (default 60).
set -uo pipefail

SKIP_PREFIX=run-kernel-tests
# shellcheck source=scripts/vm/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
RWDIR="${VM_RWDIR:-$CACHE/results}"

MODE=pytest
if [[ "${1:-}" == "--bench" ]]; then MODE=bench; shift; fi

vm_preflight
mkdir -p "$RWDIR"
rm -f "$RWDIR"/exit-code "$RWDIR"/guest.log "$RWDIR"/junit.xml "$RWDIR"/*.json

# The guest sees the host's files read-only, plus $RWDIR read-write.
GUEST="$(printf '%q' "$REPO/scripts/vm/guest.sh") $(printf '%q' "$MODE") $(printf '%q' "$RWDIR") $(printf '%q' "$VENV")$(vm_quote_args "$@")"
vm_choose_accel

start=$(date +%s)
# Byte-compile on the host: the guest reads the tree read-only and compiles slowly under emulation.
"$VENV/bin/python" -m compileall -q -j0 "$REPO/proxymedic" "$REPO/tests" "$REPO/bench" >/dev/null 2>&1 || true
timeout "${VM_TIMEOUT:-1200}" "${VNG[@]}" "${ACCEL[@]}" --verbose --memory "${VM_MEMORY:-2G}" --cpus "${VM_CPUS:-2}" --rwdir "$RWDIR" -- "$GUEST" 2>&1 \
    | vm_console_filter
vng_rc=${PIPESTATUS[0]}
end=$(date +%s)
echo "run-kernel-tests: VM wall time $((end - start)) s"

if [[ ! -f "$RWDIR/exit-code" ]]; then
    # Only now does vng's exit code say something: the guest never wrote its result.
    if [[ -f "$RWDIR/guest.log" ]]; then
        # The guest booted and ran the tests: running out of time is a failure, not a skip.
        echo "run-kernel-tests: FAILED: the tests did not finish within VM_TIMEOUT=${VM_TIMEOUT:-1200} s (vng exit $vng_rc)"
        exit 1
    fi
    why="the VM did not boot"
    [[ $vng_rc -eq 124 ]] && why="the VM did not boot within VM_TIMEOUT=${VM_TIMEOUT:-1200} s"
    skip "$why (vng exit $vng_rc)"
fi
rc="$(cat "$RWDIR/exit-code")"
echo "run-kernel-tests: $MODE exit code $rc; results in $RWDIR"
exit "$rc"
