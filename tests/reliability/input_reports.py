"""Hostile NodeProxyHealth reports, as the operator's watch could hand them over.

Every report carries evidence that would make the operator act (a real server and connections of a
dead backend, a stale kube-proxy): with one defect each, the report must be no evidence at all.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.unit.factories import with_change

NODE = "node-1"
DEAD = "10.244.1.5"
LIVE = "10.244.2.7"
HUGE = 100_000


def evidence(name: str = NODE) -> dict[str, Any]:
    """A report that, accepted, calls for a flush intent and a kube-proxy restart on its node."""
    return {
        "apiVersion": "proxymedic.io/v1alpha1",
        "kind": "NodeProxyHealth",
        "metadata": {"name": name},
        "spec": {"nodeName": name},
        "status": {
            "observedAt": "2030-01-01T00:00:00Z",
            "proxyMode": "ipvs",
            "kubeProxy": {
                "freshness": "Stale",
                "reason": "last sync 600 s ago",
                "lastSyncTime": "2000-01-01T00:00:00Z",
            },
            "ipvs": {"udpTimeoutSeconds": 300},
            "conntrack": {"count": 10, "max": 131072},
            "virtualServers": [
                {
                    "vip": "10.96.0.10",
                    "port": 53,
                    "protocol": "UDP",
                    "realServers": [
                        {"ip": DEAD, "port": 53, "weight": 1, "connections": 3},
                        {"ip": LIVE, "port": 53, "weight": 1, "connections": 1},
                    ],
                    "orphanedConnections": [],
                }
            ],
        },
    }


def broken(path: str, value: Any) -> dict[str, Any]:
    return with_change(evidence(), path, value)


def healthy() -> dict[str, Any]:
    """The same node with nothing to repair: the live backend only, kube-proxy fresh."""
    report = with_change(evidence(), "status.kubeProxy", {"freshness": "Fresh"})
    report["status"]["virtualServers"][0]["realServers"] = [{"ip": LIVE, "port": 53, "weight": 1}]
    return report


def absurd(path: str, value: Any) -> dict[str, Any]:
    return with_change(healthy(), path, value)


def vs(**changes: Any) -> list[dict[str, Any]]:
    item = copy.deepcopy(evidence()["status"]["virtualServers"][0])
    item.update(changes)
    return [item]


# Each defect makes the model reject the whole report: (report, field path named).
REJECTED: dict[str, dict[str, Any]] = {
    "status-a-list": broken("status", [1, 2]),
    "virtual-servers-a-dict": broken("status.virtualServers", {"10.96.0.10": 53}),
    "real-server-not-an-ip": broken(
        "status.virtualServers", vs(realServers=[{"ip": "dead", "port": 53, "weight": 1}])
    ),
    "real-server-port-zero": broken(
        "status.virtualServers", vs(realServers=[{"ip": DEAD, "port": 0, "weight": 1}])
    ),
    "weight-negative": broken(
        "status.virtualServers", vs(realServers=[{"ip": DEAD, "port": 53, "weight": -1}])
    ),
    "connections-text": broken(
        "status.virtualServers",
        vs(realServers=[{"ip": DEAD, "port": 53, "weight": 1, "connections": "lots"}]),
    ),
    "protocol-unknown": broken("status.virtualServers", vs(protocol="QUIC")),
    "conntrack-count-negative": broken("status.conntrack", {"count": -5, "max": 10}),
    "conntrack-max-text": broken("status.conntrack", {"count": 5, "max": "big"}),
    "freshness-unknown-word": broken("status.kubeProxy.freshness", "Stale!"),
    "proxy-mode-unknown": broken("status.proxyMode", "userspace"),
    "observed-at-garbage": broken("status.observedAt", "a while ago"),
    "finding-type-unknown": broken(
        "status.findings", [{"type": "EverythingIsOnFire", "message": "x", "since": "2030-01-01T00:00:00Z"}]
    ),
    "result-outcome-unknown": broken(
        "status.recentResults",
        [{"intent": "x", "outcome": "Exploded", "completedAt": "2030-01-01T00:00:00Z"}],
    ),
    "sysctl-value-text": broken("status.sysctls", {"net.ipv4.vs.expire_nodest_conn": "zero"}),
    "unknown-status-field": broken("status.command", "restart everything"),
    "no-spec": {k: v for k, v in evidence().items() if k != "spec"},
    "spec-names-another-node": broken("spec.nodeName", "node-2"),
    "huge-virtual-servers": broken("status.virtualServers", vs() * HUGE),
    "huge-real-servers": broken(
        "status.virtualServers",
        vs(realServers=[{"ip": DEAD, "port": 1 + i % 65535, "weight": 1} for i in range(HUGE)]),
    ),
    "huge-orphans": broken(
        "status.virtualServers", vs(orphanedConnections=[{"ip": DEAD, "port": 53, "connections": 1}] * HUGE)
    ),
    "huge-findings": broken(
        "status.findings", [{"type": "SysctlDrift", "message": "x", "since": "2030-01-01T00:00:00Z"}] * 10_000
    ),
    "huge-problems": broken("status.problems", ["x"] * 10_000),
    "huge-reason": broken("status.kubeProxy.reason", "x" * 10_000_000),
}

# Well-formed reports with absurd values: accepted, judged, and no action follows from them.
ABSURD: dict[str, dict[str, Any]] = {
    "live-backend-absurd-connections": absurd(
        "status.virtualServers",
        vs(
            realServers=[{"ip": LIVE, "port": 53, "weight": 2**62, "connections": 2**62}],
            orphanedConnections=[],
        ),
    ),
    "orphans-to-live-backend": absurd(
        "status.virtualServers",
        vs(
            realServers=[{"ip": LIVE, "port": 53, "weight": 1}],
            orphanedConnections=[{"ip": LIVE, "port": 53, "connections": 2**62}],
        ),
    ),
    "vip-of-no-service": absurd(
        "status.virtualServers",
        [
            {
                "vip": "10.96.99.99",
                "port": 5353,
                "protocol": "UDP",
                "realServers": [{"ip": DEAD, "port": 53, "weight": 1}],
            }
        ],
    ),
    "conntrack-beyond-ceiling": absurd("status.conntrack", {"count": 2**62, "max": 2**62}),
}

UNKNOWN_NODES: dict[str, dict[str, Any]] = {
    "node-without-node-object": evidence("ghost-node"),
    "node-deleted-since": evidence("node-gone"),
}
"""Reports of nodes the cluster does not have (no Node object): no evidence of anything."""
