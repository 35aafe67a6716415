# Shared by run-kernel-tests.sh and run-cluster-tests.sh (sourced, not run): the checks before a
# VM can boot, the choice between KVM and TCG, and the filter for the console's boot noise.
# The caller sets SKIP_PREFIX (its name) and may set TIER_SKIP_REASON (a file for the reason).

SKIP=77
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
CACHE="${VM_CACHE:-$REPO/.cache/vm}"

skip() {
    printf '%s: SKIPPED: %s\n' "$SKIP_PREFIX" "$*" >&2
    if [[ -n "${TIER_SKIP_REASON:-}" ]]; then printf '%s\n' "$*" >"$TIER_SKIP_REASON"; fi
    exit "$SKIP"
}

# Root, QEMU, virtme-ng and the prepared kernel; sets VMLINUZ and VNG (the vng command line).
vm_preflight() {
    [[ $(id -u) -eq 0 ]] || skip "needs root (QEMU with virtme-ng shares the host's root filesystem)"
    command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 not installed: run scripts/vm/setup.sh"
    [[ -x "$VENV/bin/vng" ]] || skip "virtme-ng not installed in $VENV: run scripts/vm/setup.sh"
    local kroot kver
    kroot="$(readlink -f "$CACHE/current" 2>/dev/null || true)"
    kver="$(basename "${kroot:-none}")"
    VMLINUZ="$kroot/boot/vmlinuz-$kver"
    [[ -n "$kroot" && -f "$VMLINUZ" ]] || skip "no prepared kernel under $CACHE: run scripts/vm/setup.sh"
    [[ -d "/lib/modules/$kver" ]] || skip "modules for $kver not installed: run scripts/vm/setup.sh"
    # virtme-ng calls its helper virtme-run through PATH.
    VNG=(env "PATH=$VENV/bin:$PATH" "$VENV/bin/vng" -r "$VMLINUZ" --force-9p)
}

# KVM only where it really works: /dev/kvm can exist and still fail under `-cpu host`. The probe
# boots a small VM that writes a file; success is that file, not vng's exit code (vng exits 255
# when the guest powers off, whatever it ran). Prints why KVM is unusable, or nothing.
_kvm_unusable() {
    [[ -c /dev/kvm ]] || { echo "no /dev/kvm"; return 0; }
    [[ -r /dev/kvm && -w /dev/kvm ]] || { echo "/dev/kvm is not readable and writable"; return 0; }
    local probe log rc
    probe="$(mktemp -d)"
    log="$probe/vng.log"
    timeout "${VM_PROBE_TIMEOUT:-60}" "${VNG[@]}" --memory 256M --cpus 1 --rwdir "$probe" \
        -- "echo ok > $(printf '%q' "$probe/booted")" >"$log" 2>&1
    rc=$?
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

# Sets ACCEL (extra vng arguments) from VM_ACCEL (kvm, tcg, or probe by default) and says which.
vm_choose_accel() {
    local why
    case "${VM_ACCEL:-probe}" in
        kvm) ACCEL=(); echo "$SKIP_PREFIX: KVM (VM_ACCEL=kvm)" ;;
        tcg) ACCEL=(--disable-kvm); echo "$SKIP_PREFIX: TCG emulation (VM_ACCEL=tcg)" ;;
        *)
            if why="$(_kvm_unusable)"; then
                ACCEL=(--disable-kvm)
                echo "$SKIP_PREFIX: TCG emulation, slower: $why"
            else
                ACCEL=()
                echo "$SKIP_PREFIX: KVM (a probe VM booted with it)"
            fi
            ;;
    esac
}

# The console without the kernel's boot lines and virtme-ng's own chatter.
vm_console_filter() {
    grep --line-buffered -vE '^\[ *[0-9]+\.[0-9]+\]|^(Probing EDD|Memory KASLR|Poking KASLR|virtme: )'
}

# Quote each argument for the guest's shell.
vm_quote_args() {
    local out="" a
    for a in "$@"; do out+=" $(printf '%q' "$a")"; done
    printf '%s' "$out"
}
