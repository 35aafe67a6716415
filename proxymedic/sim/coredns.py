"""The simulated CoreDNS Service: its pods' states, its EndpointSlice, and what kube-proxy programs."""

from __future__ import annotations

from typing import Any

from proxymedic.dataplane.types import Endpoint, ServiceKey
from proxymedic.sim.kubeproxy import desired_state

DNS_NAMESPACE, DNS_SERVICE, DNS_VIP = "kube-system", "kube-dns", "10.96.0.10"
SLICE_NAME = f"{DNS_SERVICE}-sim"


# The policy the demo and the benchmarks run with: every repair on, short observation times.
POLICY: dict[str, Any] = {
    "services": {"namespaces": [DNS_NAMESPACE], "labelSelector": {"matchLabels": {"k8s-app": "kube-dns"}}},
    "actions": {
        "flushStaleConnections": {"enabled": True},
        "removeStaleRealServers": {"enabled": True},
        "flushStaleConntrack": {"enabled": True},
        "enforceSysctls": {"enabled": True},
        "restartKubeProxy": {"enabled": True, "staleAfter": "10s"},
    },
    "guardrails": {"minObservation": "2s", "nodeCooldown": "10s"},
}


def dns_service() -> dict[str, Any]:
    """The CoreDNS Service: a UDP and a TCP port 53 on the VIP."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": DNS_SERVICE, "namespace": DNS_NAMESPACE, "labels": {"k8s-app": "kube-dns"}},
        "spec": {
            "clusterIP": DNS_VIP,
            "clusterIPs": [DNS_VIP],
            "ports": [
                {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 53},
                {"name": "dns-tcp", "protocol": "TCP", "port": 53, "targetPort": 53},
            ],
        },
    }


def kube_proxy_pod(node: str) -> dict[str, Any]:
    """The kube-proxy DaemonSet's pod on a node: what the operator deletes to restart it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"kube-proxy-{node}",
            "namespace": "kube-system",
            "labels": {"k8s-app": "kube-proxy"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "DaemonSet",
                    "name": "kube-proxy",
                    "uid": "5f0c5d3e-0000-4000-8000-00000000d5e7",
                    "controller": True,
                }
            ],
        },
        "spec": {"nodeName": node, "containers": [{"name": "kube-proxy", "image": "kube-proxy"}]},
    }


class DnsPods(dict[str, str]):
    """Backend IP → ``ready`` | ``terminating`` (not ready, still answering) | ``gone``."""

    def endpoints(self) -> list[dict[str, Any]]:
        """The EndpointSlice's endpoints, with the conditions a terminating pod reports."""
        result = []
        for ip, state in self.items():
            if state == "gone":
                continue
            ready = state == "ready"
            result.append(
                {"addresses": [ip], "conditions": {"ready": ready, "serving": True, "terminating": not ready}}
            )
        return result

    def endpoint_slice(self) -> dict[str, Any]:
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": SLICE_NAME,
                "namespace": DNS_NAMESPACE,
                "labels": {"kubernetes.io/service-name": DNS_SERVICE},
            },
            "addressType": "IPv4",
            "endpoints": self.endpoints(),
            "ports": [
                {"name": "dns", "protocol": "UDP", "port": 53},
                {"name": "dns-tcp", "protocol": "TCP", "port": 53},
            ],
        }

    def in_use(self) -> frozenset[str]:
        """What kube-proxy programs: the ready pods, else the terminating ones still serving."""
        ready = frozenset(ip for ip, state in self.items() if state == "ready")
        return ready or frozenset(ip for ip, state in self.items() if state == "terminating")

    def desired(self) -> dict[ServiceKey, tuple[Endpoint, ...]]:
        """The virtual service and real servers a healthy kube-proxy programs for the Service."""
        return desired_state(
            {(DNS_NAMESPACE, DNS_SERVICE): ((DNS_VIP,), ((53, 53),))},
            {(DNS_NAMESPACE, DNS_SERVICE): self.in_use()},
        )
