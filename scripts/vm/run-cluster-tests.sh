#!/usr/bin/env bash
# Run the real-control-plane tier (pytest -m cluster tests/cluster) inside one QEMU VM booted
# with virtme-ng, as run-kernel-tests.sh does: etcd, kube-apiserver and kube-proxy (IPVS) on the
# VM as node-1, ProxyMedic installed with its chart, scenarios without and with ProxyMedic.
#
# Usage: scripts/vm/run-cluster-tests.sh [pytest args...]
#
# Exit codes: pytest's exit code from inside the guest;
#   77  the tier cannot run here (no QEMU, no virtme-ng, no prepared kernel, not root, no etcd,
#       kubectl, ipset or iptables, no Kubernetes binaries, or the VM failed to boot): treat as
#       "skipped"; the reason is printed.
# Results: the JUnit XML goes to build/test-results/cluster.xml; the measured table
#   (cluster-table.json), the guest's output and the components' logs stay in VM_RWDIR.
# Environment: VENV (default <repo>/.venv), VM_CACHE (default <repo>/.cache/vm),
#   VM_RWDIR (default <repo>/.cache/cluster-results), VM_MEMORY (default 4G), VM_CPUS
#   (default 2), VM_TIMEOUT seconds for the whole VM run (default 2700);
#   PROXYMEDIC_K8S_BIN_DIR or PROXYMEDIC_K8S_XZ_DIR: where kube-apiserver and kube-proxy are
#   (tests/realk8s/binaries.py).
set -uo pipefail

SKIP=77
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
CACHE="${VM_CACHE:-$REPO/.cache/vm}"
RWDIR="${VM_RWDIR:-$REPO/.cache/cluster-results}"

skip() { printf 'run-cluster-tests: SKIPPED: %s\n' "$*" >&2; exit "$SKIP"; }

[[ $(id -u) -eq 0 ]] || skip "needs root (QEMU with virtme-ng shares the host's root filesystem)"
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 not installed: run scripts/vm/setup.sh"
[[ -x "$VENV/bin/vng" ]] || skip "virtme-ng not installed in $VENV: run scripts/vm/setup.sh"
KROOT="$(readlink -f "$CACHE/current" 2>/dev/null || true)"
KVER="$(basename "${KROOT:-none}")"
VMLINUZ="$KROOT/boot/vmlinuz-$KVER"
[[ -n "$KROOT" && -f "$VMLINUZ" ]] || skip "no prepared kernel under $CACHE: run scripts/vm/setup.sh"
[[ -d "/lib/modules/$KVER" ]] || skip "modules for $KVER not installed: run scripts/vm/setup.sh"
for tool in etcd kubectl ipset iptables openssl; do
    command -v "$tool" >/dev/null || skip "$tool not installed: run scripts/vm/setup.sh (kubectl: install it)"
done
# Unpack kube-apiserver and kube-proxy on the host: the guest sees the tree read-only.
missing="$(cd "$REPO" && "$VENV/bin/python" -c '
from tests.realk8s import binaries
try:
    binaries.find(need_proxy=True)
except binaries.Missing as missing:
    print(missing)
' 2>&1)" || skip "cannot look for the Kubernetes binaries: $missing"
[[ -z "$missing" ]] || skip "$missing"

mkdir -p "$RWDIR" "$REPO/build/test-results"
rm -f "$RWDIR"/exit-code "$RWDIR"/guest.log "$RWDIR"/junit.xml "$RWDIR"/*.json "$RWDIR"/*.log

ARGS=""
for a in "$@"; do ARGS+=" $(printf '%q' "$a")"; done
GUEST="$(printf '%q' "$REPO/scripts/vm/guest.sh") cluster $(printf '%q' "$RWDIR") $(printf '%q' "$VENV")$ARGS"

start=$(date +%s)
"$VENV/bin/python" -m compileall -q -j0 "$REPO/proxymedic" "$REPO/tests" >/dev/null 2>&1 || true
PATH="$VENV/bin:$PATH" timeout "${VM_TIMEOUT:-2700}" "$VENV/bin/vng" -r "$VMLINUZ" --disable-kvm --force-9p \
    --verbose --memory "${VM_MEMORY:-4G}" --cpus "${VM_CPUS:-2}" --rwdir "$RWDIR" -- "$GUEST" 2>&1 \
    | grep --line-buffered -vE '^\[ *[0-9]+\.[0-9]+\]|^(Probing EDD|Memory KASLR|Poking KASLR|virtme: )'
vng_rc=${PIPESTATUS[0]}
end=$(date +%s)
echo "run-cluster-tests: VM wall time $((end - start)) s (vng exit $vng_rc)"

if [[ ! -f "$RWDIR/exit-code" ]]; then
    skip "the VM did not report a result (boot failure or timeout; vng exit $vng_rc)"
fi
[[ -f "$RWDIR/junit.xml" ]] && cp "$RWDIR/junit.xml" "$REPO/build/test-results/cluster.xml"
if [[ -f "$RWDIR/cluster-table.json" ]]; then
    echo "run-cluster-tests: measured table ($RWDIR/cluster-table.json):"
    cat "$RWDIR/cluster-table.json"
fi
rc="$(cat "$RWDIR/exit-code")"
echo "run-cluster-tests: exit code $rc; results in $RWDIR"
exit "$rc"
