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

SKIP=77
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
CACHE="${VM_CACHE:-$REPO/.cache/vm}"
RWDIR="${VM_RWDIR:-$CACHE/results}"

skip() {
    printf 'run-kernel-tests: SKIPPED: %s\n' "$*" >&2
    if [[ -n "${TIER_SKIP_REASON:-}" ]]; then printf '%s\n' "$*" >"$TIER_SKIP_REASON"; fi
    exit "$SKIP"
}

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

# virtme-ng calls its helper virtme-run through PATH.
VNG=(env "PATH=$VENV/bin:$PATH" "$VENV/bin/vng" -r "$VMLINUZ" --force-9p)

# KVM only where it really works: /dev/kvm can exist and still fail under `-cpu host`. The probe
# boots a small VM that writes a file; success is that file, not vng's exit code (vng exits 255
# when the guest powers off, whatever it ran).
kvm_unusable() {
    [[ -c /dev/kvm ]] || { echo "no /dev/kvm"; return 0; }
    [[ -r /dev/kvm && -w /dev/kvm ]] || { echo "/dev/kvm is not readable and writable"; return 0; }
    local probe log
    probe="$(mktemp -d)"
    log="$probe/vng.log"
    timeout "${VM_PROBE_TIMEOUT:-60}" "${VNG[@]}" --memory 256M --cpus 1 --rwdir "$probe" \
        -- "echo ok > $(printf '%q' "$probe/booted")" >"$log" 2>&1
    local rc=$?
    if [[ -f "$probe/booted" ]]; then
        rm -rf "$probe"
        return 1
    fi
    if [[ $rc -eq 124 ]]; then
        echo "a probe VM with KVM did not boot within ${VM_PROBE_TIMEOUT:-60} s"
    else
        echo "a probe VM with KVM failed: $(grep -iE 'error|fail' "$log" | head -n1 | cut -c1-200)"
    fi
    rm -rf "$probe"
    return 0
}

case "${VM_ACCEL:-probe}" in
    kvm) ACCEL=(); echo "run-kernel-tests: KVM (VM_ACCEL=kvm)" ;;
    tcg) ACCEL=(--disable-kvm); echo "run-kernel-tests: TCG emulation (VM_ACCEL=tcg)" ;;
    *)
        if why="$(kvm_unusable)"; then
            ACCEL=(--disable-kvm)
            echo "run-kernel-tests: TCG emulation, slower: $why"
        else
            ACCEL=()
            echo "run-kernel-tests: KVM (a probe VM booted with it)"
        fi
        ;;
esac

start=$(date +%s)
# Byte-compile on the host: the guest reads the tree read-only and compiles slowly under emulation.
"$VENV/bin/python" -m compileall -q -j0 "$REPO/proxymedic" "$REPO/tests" "$REPO/bench" >/dev/null 2>&1 || true
timeout "${VM_TIMEOUT:-1200}" "${VNG[@]}" "${ACCEL[@]}" --verbose --memory "${VM_MEMORY:-2G}" --cpus "${VM_CPUS:-2}" --rwdir "$RWDIR" -- "$GUEST" 2>&1 \
    | grep --line-buffered -vE '^\[ *[0-9]+\.[0-9]+\]|^(Probing EDD|Memory KASLR|Poking KASLR|virtme: )'
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
