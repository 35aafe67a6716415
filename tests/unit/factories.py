"""Valid example objects of each kind, for tests to start from and break one field at a time."""

from __future__ import annotations

import copy
from typing import Any


def policy(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "proxymedic.io/v1alpha1",
        "kind": "ProxyHealthPolicy",
        "metadata": {"name": "coredns"},
        "spec": {
            "services": {
                "namespaces": ["kube-system"],
                "labelSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            },
            "actions": {"flushStaleConnections": {"enabled": True}},
            "guardrails": {"dryRun": True},
            **spec,
        },
    }


def intent(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "proxymedic.io/v1alpha1",
        "kind": "RemediationIntent",
        "metadata": {"name": "kube-dns-flush-1"},
        "spec": {
            "policyName": "coredns",
            "action": "FlushStaleBackends",
            "reason": "10.244.1.5 left kube-system/kube-dns",
            "service": {
                "namespace": "kube-system",
                "name": "kube-dns",
                "clusterIPs": ["10.96.0.10"],
                "ports": [{"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 53}],
            },
            "deadBackends": ["10.244.1.5"],
            "steps": ["RemoveRealServers", "FlushConnections", "DeleteConntrack"],
            "liveBackends": ["10.244.2.7", "10.244.3.9"],
            "allNodes": True,
            "decidedAt": "2026-11-22T10:00:00Z",
            "expiresAt": "2026-11-22T10:10:00Z",
            **spec,
        },
    }


def node_health(**status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "proxymedic.io/v1alpha1",
        "kind": "NodeProxyHealth",
        "metadata": {"name": "node-1"},
        "spec": {"nodeName": "node-1"},
        "status": {
            "observedAt": "2026-11-22T10:00:00Z",
            "proxyMode": "ipvs",
            "kubeProxy": {"freshness": "Fresh", "healthz": "Healthy"},
            "ipvs": {"tcpTimeoutSeconds": 900, "tcpFinTimeoutSeconds": 120, "udpTimeoutSeconds": 300},
            "sysctls": {"net.ipv4.vs.expire_nodest_conn": 1},
            "conntrack": {"count": 120, "max": 131072},
            "virtualServers": [
                {
                    "vip": "10.96.0.10",
                    "port": 53,
                    "protocol": "UDP",
                    "realServers": [{"ip": "10.244.2.7", "port": 53, "weight": 1, "connections": 4}],
                }
            ],
            "findings": [],
            "recentResults": [
                {
                    "intent": "kube-dns-flush-1",
                    "outcome": "Applied",
                    "completedAt": "2026-11-22T10:00:01Z",
                    "flushedConnections": 3,
                }
            ],
            **status,
        },
    }


def with_change(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``obj`` with the dotted ``path`` set to ``value`` (list indexes as numbers)."""
    result = copy.deepcopy(obj)
    node: Any = result
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return result
