#!/usr/bin/env bash
# Run the real-kernel test tier (pytest -m kernel tests/kernel) inside a QEMU VM booted
# with virtme-ng on the Debian generic kernel prepared by scripts/vm/setup.sh.
#
# Usage:
#   scripts/vm/run-kernel-tests.sh [pytest args...]      # the kernel tests
#   scripts/vm/run-kernel-tests.sh --bench [bench args]  # bench/kernel_flush.py instead
#
# Exit codes: pytest's (or the benchmark's) exit code from inside the guest;
#   77  the tier cannot run here (no QEMU, no virtme-ng, no prepared kernel, not root,
#       or the VM failed to boot): treat as "skipped"; the reason is printed.
# Environment: VENV (default <repo>/.venv), VM_CACHE (default <repo>/.cache/vm),
#   VM_RWDIR (default <repo>/.cache/vm/results), VM_MEMORY (default 2G), VM_CPUS (default 2),
#   VM_TIMEOUT seconds for the whole VM run (default 1200).
set -uo pipefail

SKIP=77
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
CACHE="${VM_CACHE:-$REPO/.cache/vm}"
RWDIR="${VM_RWDIR:-$CACHE/results}"

skip() { printf 'run-kernel-tests: SKIPPED: %s\n' "$*" >&2; exit "$SKIP"; }

MODE=pytest
if [[ "${1:-}" == "--bench" ]]; then MODE=bench; shift; fi

[[ $(id -u) -eq 0 ]] || skip "needs root (QEMU with virtme-ng shares the host's root filesystem)"
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 not installed: run scripts/vm/setup.sh"
[[ -x "$VENV/bin/vng" ]] || skip "virtme-ng not installed in $VENV: run scripts/vm/setup.sh"
KROOT="$(readlink -f "$CACHE/current" 2>/dev/null || true)"
KVER="$(basename "${KROOT:-none}")"
VMLINUZ="$KROOT/boot/vmlinuz-$KVER"
[[ -n "$KROOT" && -f "$VMLINUZ" ]] || skip "no prepared kernel under $CACHE: run scripts/vm/setup.sh"
[[ -d "/lib/modules/$KVER" ]] || skip "modules for $KVER not installed: run scripts/vm/setup.sh"

mkdir -p "$RWDIR"
rm -f "$RWDIR"/exit-code "$RWDIR"/guest.log "$RWDIR"/junit.xml "$RWDIR"/*.json

# The guest sees the host's files read-only, plus $RWDIR read-write. Quote every argument
# for the guest shell.
ARGS=""
for a in "$@"; do ARGS+=" $(printf '%q' "$a")"; done
GUEST="$(printf '%q' "$REPO/scripts/vm/guest.sh") $(printf '%q' "$MODE") $(printf '%q' "$RWDIR") $(printf '%q' "$VENV")$ARGS"

start=$(date +%s)
# Byte-compile on the host: the guest reads the tree read-only and compiles slowly under emulation.
"$VENV/bin/python" -m compileall -q -j0 "$REPO/proxymedic" "$REPO/tests" "$REPO/bench" >/dev/null 2>&1 || true
# virtme-ng calls its helper virtme-run through PATH.
PATH="$VENV/bin:$PATH" timeout "${VM_TIMEOUT:-1200}" "$VENV/bin/vng" -r "$VMLINUZ" --disable-kvm --force-9p \
    --verbose --memory "${VM_MEMORY:-2G}" --cpus "${VM_CPUS:-2}" --rwdir "$RWDIR" -- "$GUEST" 2>&1 \
    | grep --line-buffered -vE '^\[ *[0-9]+\.[0-9]+\]|^(Probing EDD|Memory KASLR|Poking KASLR|virtme: )'
vng_rc=${PIPESTATUS[0]}
end=$(date +%s)
echo "run-kernel-tests: VM wall time $((end - start)) s (vng exit $vng_rc)"

if [[ ! -f "$RWDIR/exit-code" ]]; then
    skip "the VM did not report a result (boot failure or timeout; vng exit $vng_rc)"
fi
rc="$(cat "$RWDIR/exit-code")"
echo "run-kernel-tests: $MODE exit code $rc; results in $RWDIR"
exit "$rc"
