#!/usr/bin/env bash
# End-to-end on kind (kube-proxy in IPVS mode): build and load the image, install the chart with
# the CoreDNS policy active (not dry-run), restart CoreDNS under DNS load from a client pod, and
# assert that ProxyMedic repaired the nodes and said so with Events.
#
# Needs: docker (with an engine), kind, kubectl, helm. Exit 77 when one is missing.
# Environment: KIND_CLUSTER (default proxymedic-e2e), KIND_NODE_IMAGE (default kindest/node:v1.34.0),
#              KEEP_CLUSTER=1 to keep the cluster afterwards, E2E_TIMEOUT seconds to wait for Events.
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER=${KIND_CLUSTER:-proxymedic-e2e}
NODE_IMAGE=${KIND_NODE_IMAGE:-kindest/node:v1.34.0}
IMAGE=proxymedic:e2e
NS=proxymedic
RELEASE=pm
TIMEOUT=${E2E_TIMEOUT:-180}
CLIENT_IMAGE=registry.k8s.io/e2e-test-images/jessie-dnsutils:1.7
KUBECTL=(kubectl --context "kind-$CLUSTER")

for tool in docker kind kubectl helm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "e2e SKIPPED: $tool is not installed" >&2
        exit 77
    fi
done
if ! docker info >/dev/null 2>&1; then
    echo "e2e SKIPPED: docker has no engine (docker info failed); kind cannot create a cluster" >&2
    exit 77
fi

log() { printf '== %s %s\n' "$(date -u +%H:%M:%S)" "$*"; }
fail() {
    echo "e2e FAILED: $*" >&2
    "${KUBECTL[@]}" get events -A --sort-by=.lastTimestamp | tail -40 >&2 || true
    "${KUBECTL[@]}" get nodeproxyhealths,remediationintents,proxyhealthpolicies -o wide >&2 || true
    "${KUBECTL[@]}" -n "$NS" logs "deployment/$RELEASE-proxymedic-operator" --tail=80 >&2 || true
    "${KUBECTL[@]}" -n "$NS" logs -l app.kubernetes.io/component=agent --tail=30 --prefix >&2 || true
    exit 1
}
cleanup() {
    if [ "${KEEP_CLUSTER:-0}" != 1 ]; then
        kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

log "build $IMAGE"
docker build -t "$IMAGE" .

if ! kind get clusters | grep -qx "$CLUSTER"; then
    log "create kind cluster $CLUSTER ($NODE_IMAGE, kube-proxy in IPVS mode)"
    kind create cluster --name "$CLUSTER" --image "$NODE_IMAGE" --config tests/e2e/kind-config.yaml --wait 180s
fi
mode=$("${KUBECTL[@]}" -n kube-system get configmap kube-proxy -o jsonpath='{.data.config\.conf}' | grep -E '^mode:' || true)
[[ "$mode" == *ipvs* ]] || fail "kube-proxy is not in IPVS mode ($mode)"
log "load $IMAGE into the nodes"
kind load docker-image "$IMAGE" --name "$CLUSTER"

log "install the chart (CoreDNS policy active)"
"${KUBECTL[@]}" create namespace "$NS" --dry-run=client -o yaml | "${KUBECTL[@]}" apply -f -
"${KUBECTL[@]}" label namespace "$NS" --overwrite pod-security.kubernetes.io/enforce=privileged
helm --kube-context "kind-$CLUSTER" upgrade --install "$RELEASE" charts/proxymedic -n "$NS" \
    --set image.repository=proxymedic --set image.tag=e2e --set image.pullPolicy=Never \
    --set policy.coredns.dryRun=false --wait --timeout 5m
"${KUBECTL[@]}" -n "$NS" rollout status "daemonset/$RELEASE-proxymedic-agent" --timeout=180s
"${KUBECTL[@]}" -n "$NS" rollout status "deployment/$RELEASE-proxymedic-operator" --timeout=180s

nodes=$("${KUBECTL[@]}" get nodes -o name | wc -l)
log "wait for a NodeProxyHealth of each of the $nodes nodes"
for _ in $(seq 90); do
    reported=$("${KUBECTL[@]}" get nodeproxyhealths -o jsonpath='{range .items[?(@.status.observedAt)]}{.metadata.name}{"\n"}{end}' | grep -c . || true)
    [ "$reported" -ge "$nodes" ] && break
    sleep 2
done
[ "$reported" -ge "$nodes" ] || fail "only $reported of $nodes nodes reported a NodeProxyHealth"
"${KUBECTL[@]}" get nodeproxyhealths -o wide
[ "$("${KUBECTL[@]}" get nodeproxyhealths -o jsonpath='{.items[0].status.proxyMode}')" = "ipvs" ] \
    || fail "the agent does not report IPVS mode"

vip=$("${KUBECTL[@]}" -n kube-system get service kube-dns -o jsonpath='{.spec.clusterIP}')
log "DNS load against $vip from a client re-using one source port"
"${KUBECTL[@]}" delete pod dns-load --ignore-not-found --wait
# jessie-dnsutils has dig; a fixed source port (-b …#5353) keeps one IPVS connection entry, the
# entry a CoreDNS rollout leaves pointing at a dead pod (F1).
"${KUBECTL[@]}" run dns-load --image="$CLIENT_IMAGE" --restart=Never --command -- sh -c \
    "while true; do
       if dig +tries=1 +time=1 -b 0.0.0.0#5353 @$vip kubernetes.default.svc.cluster.local +short | grep -q .; then
         echo \"\$(date +%s) ok\"; else echo \"\$(date +%s) timeout\"; fi
       sleep 0.2
     done"
"${KUBECTL[@]}" wait --for=condition=Ready pod/dns-load --timeout=120s
sleep 5

since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
log "restart CoreDNS under load"
"${KUBECTL[@]}" -n kube-system rollout restart deployment/coredns
"${KUBECTL[@]}" -n kube-system rollout status deployment/coredns --timeout=180s

log "wait for the remediation Event on Service kube-system/kube-dns"
found=""
for _ in $(seq "$((TIMEOUT / 3))"); do
    found=$("${KUBECTL[@]}" -n kube-system get events \
        --field-selector involvedObject.kind=Service,involvedObject.name=kube-dns -o json \
        | python3 -c '
import json, sys
since = sys.argv[1]
for e in json.load(sys.stdin)["items"]:
    if e.get("reportingComponent") == "proxymedic-operator" and (e.get("lastTimestamp") or "") >= since:
        print(e["type"], e["reason"], e["message"], sep="\t")
' "$since" || true)
    grep -qE $'\t(StaleConnectionsFlushed|StaleRealServerRemoved)\t' <<<"$found" && break
    sleep 3
done
echo "$found"
grep -qE $'\t(StaleConnectionsFlushed|StaleRealServerRemoved)\t' <<<"$found" \
    || fail "no StaleConnectionsFlushed/StaleRealServerRemoved Event on kube-dns within ${TIMEOUT}s"
if grep -qE $'\tRemediationFailed\t' <<<"$found"; then
    fail "a remediation failed"
fi
"${KUBECTL[@]}" get remediationintents -o wide

log "DNS answers again after the rollout"
sleep 10
recent=$("${KUBECTL[@]}" logs dns-load --tail=20)
echo "$recent" | tail -5
if [ "$(grep -c ' ok$' <<<"$recent")" -lt 15 ]; then
    fail "the DNS client still times out after the remediation"
fi

log "e2e PASSED"
