#!/usr/bin/env bash
# Run the real-control-plane tier (pytest -m cluster): kube-proxy in IPVS mode in a QEMU VM
# (tests/cluster), then in nftables and iptables mode in network namespaces of this machine
# (tests/cluster_rules), which need no VM.
#
# IPVS mode: etcd and kube-apiserver on this machine at native speed (python -m tests.realk8s.serve),
# and one QEMU VM booted with virtme-ng, as run-kernel-tests.sh does, that is the node node-1:
# kube-proxy (IPVS) programs its kernel, ProxyMedic is installed with its chart and runs there,
# and the scenarios run without and with ProxyMedic. The VM reaches the API server through QEMU's
# user networking (the host's loopback is 10.0.2.2 in the guest).
#
# Usage: scripts/vm/run-cluster-tests.sh [pytest args for the VM's run...]
#
# Exit codes: 1 when the rule modes' run failed, else pytest's exit code from inside the guest;
#   77  the VM's run cannot happen here (no QEMU, no virtme-ng, no prepared kernel, not root, no etcd,
#       kubectl, ipset or iptables, no Kubernetes binaries, or the VM failed to boot): treat as
#       "skipped"; the reason is printed (and written to $TIER_SKIP_REASON when that is set).
#   1   also when the control plane did not start, or the tests did not finish within VM_TIMEOUT.
# Results: the JUnit XML of both runs goes to build/test-results/cluster.xml; the measured tables
#   (cluster-table.json, cluster-table-<mode>.json), the guest's output and the components' logs
#   stay in VM_RWDIR (the API server's and etcd's under plane/).
# Environment: VENV (default <repo>/.venv), VM_CACHE (default <repo>/.cache/vm),
#   VM_RWDIR (default <repo>/.cache/cluster-results), VM_MEMORY (default 3G), VM_CPUS
#   (default 2), VM_TIMEOUT seconds for the whole VM run (default 3300), VM_ACCEL and
#   VM_PROBE_TIMEOUT as for run-kernel-tests.sh; PROXYMEDIC_K8S_BIN_DIR or
#   PROXYMEDIC_K8S_XZ_DIR: where kube-apiserver and kube-proxy are (tests/realk8s/binaries.py).
set -uo pipefail

SKIP_PREFIX=run-cluster-tests
# shellcheck source=scripts/vm/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
RWDIR="${VM_RWDIR:-$REPO/.cache/cluster-results}"
mkdir -p "$RWDIR" "$REPO/build/test-results"
rm -f "$RWDIR"/junit.xml "$RWDIR"/junit-rules.xml "$RWDIR"/cluster-table*.json "$REPO/build/test-results/cluster.xml"

# IPVS mode, in the VM; run in a subshell, whose exit code is the VM run's (77: skipped).
vm_tier() {
vm_preflight
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

rm -rf "$RWDIR"/exit-code "$RWDIR"/guest.log "$RWDIR"/junit.xml "$RWDIR"/*.json "$RWDIR"/*.log "$RWDIR/plane"

GUEST="$(printf '%q' "$REPO/scripts/vm/guest.sh") cluster $(printf '%q' "$RWDIR") $(printf '%q' "$VENV")$(vm_quote_args "$@")"
vm_choose_accel

# The control plane on the host; stopped (and its logs copied to plane/) however this exits.
PLANE="$RWDIR/plane"
(cd "$REPO" && exec "$VENV/bin/python" -m tests.realk8s.serve "$PLANE") &
serve_pid=$!
stop_plane() { kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null; }
trap stop_plane EXIT
started=$(date +%s)
until [[ -f "$PLANE/plane.json" ]]; do
    if ! kill -0 "$serve_pid" 2>/dev/null; then
        echo "run-cluster-tests: FAILED: the control plane did not start: $(cat "$PLANE/plane-error.txt" 2>/dev/null)"
        exit 1
    fi
    if (($(date +%s) - started > 600)); then
        echo "run-cluster-tests: FAILED: the control plane was not ready within 600 s"
        exit 1
    fi
    sleep 1
done
echo "run-cluster-tests: kube-apiserver ready on the host after $(($(date +%s) - started)) s"

start=$(date +%s)
"$VENV/bin/python" -m compileall -q -j0 "$REPO/proxymedic" "$REPO/tests" >/dev/null 2>&1 || true
timeout "${VM_TIMEOUT:-3300}" "${VNG[@]}" "${ACCEL[@]}" --network user --no-dhcp --verbose \
    --memory "${VM_MEMORY:-3G}" --cpus "${VM_CPUS:-2}" --rwdir "$RWDIR" -- "$GUEST" 2>&1 \
    | vm_console_filter
vng_rc=${PIPESTATUS[0]}
end=$(date +%s)
echo "run-cluster-tests: VM wall time $((end - start)) s"

if [[ ! -f "$RWDIR/exit-code" ]]; then
    if [[ -f "$RWDIR/guest.log" ]]; then
        echo "run-cluster-tests: FAILED: the tests did not finish within VM_TIMEOUT=${VM_TIMEOUT:-3300} s (vng exit $vng_rc)"
        exit 1
    fi
    skip "the VM did not boot (vng exit $vng_rc)"
fi
if [[ -f "$RWDIR/cluster-table.json" ]]; then
    echo "run-cluster-tests: measured table ($RWDIR/cluster-table.json):"
    cat "$RWDIR/cluster-table.json"
fi
rc="$(cat "$RWDIR/exit-code")"
echo "run-cluster-tests: VM exit code $rc; results in $RWDIR"
exit "$rc"
}
(vm_tier "$@")
vm_rc=$?

# nftables and iptables mode: kube-proxy, the pods and ProxyMedic's agent in network namespaces
# of this machine, each mode with a control plane of its own (tests/cluster_rules/conftest.py).
start=$(date +%s)
(cd "$REPO" && PROXYMEDIC_CLUSTER_HOST=1 CLUSTER_REPORT_DIR="$RWDIR" "$VENV/bin/python" -m pytest \
    -p no:cacheprovider -p no:hypothesispytest -m cluster tests/cluster_rules -s -v \
    --junitxml="$RWDIR/junit-rules.xml" -o junit_suite_name=cluster-rules)
rules_rc=$?
echo "run-cluster-tests: rule modes' run: exit code $rules_rc in $(($(date +%s) - start)) s"
for mode in nftables iptables; do
    if [[ -f "$RWDIR/cluster-table-$mode.json" ]]; then
        echo "run-cluster-tests: measured table ($RWDIR/cluster-table-$mode.json):"
        cat "$RWDIR/cluster-table-$mode.json"
    fi
done

# One JUnit file for the tier: the VM's suite and the rule modes' suite.
"$VENV/bin/python" - "$REPO/build/test-results/cluster.xml" "$RWDIR/junit.xml" "$RWDIR/junit-rules.xml" <<'PY'
import sys
import xml.etree.ElementTree as ET

merged = ET.Element("testsuites")
for path in sys.argv[2:]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        continue
    merged.extend([root] if root.tag == "testsuite" else list(root))
if len(merged):
    ET.ElementTree(merged).write(sys.argv[1], encoding="utf-8", xml_declaration=True)
PY

if ((rules_rc != 0)); then
    echo "run-cluster-tests: FAILED: the rule modes' run (exit $rules_rc)"
    exit 1
fi
if ((vm_rc == SKIP)); then
    # The reason was printed by the VM's run; the rule modes' run passed.
    exit "$SKIP"
fi
exit "$vm_rc"
