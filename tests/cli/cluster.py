"""A fixed cluster for the CLI tests: every object and timestamp is fixed relative to ``NOW``.

Five nodes: node-1 healthy; node-2 with expire_nodest_conn=0; node-3 whose kube-proxy lost its
watch (a stale real server with connections, a missing one, healthz still 200); node-4 whose
agent went silent 20 minutes ago; node-5 without an agent. One policy governs the CoreDNS
Service; the operator's Events and one open intent are there as the operator leaves them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from proxymedic.api.crd import KINDS, build_crd
from proxymedic.api.meta import resource_dict
from proxymedic.emulator.runner import EmulatorThread
from proxymedic.kube.client import JsonObject
from proxymedic.operator.sysctl_gaps import GapCause, SysctlGap, policy_condition

NOW = datetime(2026, 3, 2, 9, 30, 0, tzinfo=UTC)
VIP = "10.96.0.10"
LIVE = ["10.244.1.20", "10.244.2.21", "10.244.3.22"]
DEAD = "10.244.1.11"


# What the operator says about node-2: its policy does not enable enforceSysctls.
NODE_2_GAP = SysctlGap("node-2", 0, GapCause.ACTION_DISABLED, ("coredns",), 300)


def ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")


def policy() -> tuple[JsonObject, JsonObject]:
    body = {
        "apiVersion": "proxymedic.io/v1alpha1",
        "kind": "ProxyHealthPolicy",
        "metadata": {"name": "coredns"},
        "spec": {
            "services": {
                "namespaces": ["kube-system"],
                "labelSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            },
            "actions": {
                "flushStaleConnections": {"enabled": True},
                "removeStaleRealServers": {"enabled": True},
                "flushStaleConntrack": {"enabled": True},
                "restartKubeProxy": {"enabled": True, "staleAfter": "30s"},
            },
            "guardrails": {"nodeCooldown": "5m", "minObservation": "10s"},
        },
    }
    condition = {"lastTransitionTime": ts(3600), "observedGeneration": 1, "message": ""}
    status = {
        "observedGeneration": 1,
        "conditions": [
            {"type": "Accepted", "status": "True", "reason": "Valid", **condition},
            {"type": "Active", "status": "True", "reason": "Enabled", **condition},
            {"type": "Degraded", "status": "False", "reason": "Healthy", **condition},
            {"type": "Paused", "status": "False", "reason": "Running", **condition},
            resource_dict(policy_condition("coredns", {"node-2": NODE_2_GAP}, NOW - timedelta(hours=2), 1)),
        ],
        "selectedServices": 1,
        "selectedNodes": 3,
        "counters": {
            "intentsIssued": 7,
            "actionsApplied": 12,
            "actionsHeld": 1,
            "dryRunActions": 0,
            "kubeProxyRestarts": 1,
        },
        "lastRemediation": {
            "time": ts(192),
            "action": "StaleConnectionsFlushed",
            "target": "Service kube-dns",
            "message": "10.244.1.11 left kube-system/kube-dns",
        },
    }
    return body, status


def node(name: str) -> JsonObject:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
    }


def _vs(real: list[tuple[str, int]], orphaned: list[tuple[str, int]] = ()) -> list[JsonObject]:  # type: ignore[assignment]
    return [
        {
            "vip": VIP,
            "port": 53,
            "protocol": "UDP",
            "realServers": [{"ip": ip, "port": 53, "weight": 1, "connections": conns} for ip, conns in real],
            "orphanedConnections": [{"ip": ip, "port": 53, "connections": conns} for ip, conns in orphaned],
        }
    ]


SYSCTLS = {
    "net.ipv4.vs.expire_nodest_conn": 1,
    "net.ipv4.vs.expire_quiescent_template": 1,
    "net.ipv4.vs.conntrack": 1,
    "net.netfilter.nf_conntrack_max": 262144,
    "net.netfilter.nf_conntrack_udp_timeout": 30,
    "net.netfilter.nf_conntrack_udp_timeout_stream": 120,
}


def health(name: str, observed: float, **status: Any) -> tuple[JsonObject, JsonObject]:
    body = {
        "apiVersion": "proxymedic.io/v1alpha1",
        "kind": "NodeProxyHealth",
        "metadata": {"name": name},
        "spec": {"nodeName": name},
    }
    full = {
        "observedAt": ts(observed),
        "agentVersion": "0.1.0",
        "kernelVersion": "6.1.0-18-amd64",
        "proxyMode": "ipvs",
        "kubeProxy": {
            "freshness": "Fresh",
            "reason": "last sync 2 s ago",
            "lastSyncTime": ts(observed + 2),
            "lastQueuedTime": ts(observed + 200),
            "healthz": "Healthy",
            "endpointChangesTotal": 1021,
            "startedAt": ts(observed + 86400),
        },
        "ipvs": {"tcpTimeoutSeconds": 900, "tcpFinTimeoutSeconds": 120, "udpTimeoutSeconds": 300},
        "sysctls": SYSCTLS,
        "conntrack": {"count": 5243, "max": 262144, "drops": 0},
        "virtualServers": _vs([(ip, 2) for ip in LIVE]),
        **status,
    }
    return body, full


def healths() -> list[tuple[JsonObject, JsonObject]]:
    return [
        health("node-1", 4),
        health(
            "node-2",
            5,
            sysctls={**SYSCTLS, "net.ipv4.vs.expire_nodest_conn": 0},
            findings=[
                {
                    "type": "SysctlDrift",
                    "message": "net.ipv4.vs.expire_nodest_conn is 0: connections to removed backends live "
                    "until their timeout",
                    "since": ts(40),
                }
            ],
            findingCount=1,
        ),
        health(
            "node-3",
            3,
            virtualServers=_vs([(DEAD, 4), (LIVE[0], 3), (LIVE[1], 1)], [("10.244.1.9", 2)]),
            conntrack={"count": 243000, "max": 262144, "drops": 17},
            recentResults=[
                {
                    "intent": "kube-dns-flush-5d1c0b7e21",
                    "outcome": "Applied",
                    "completedAt": ts(191),
                    "durationSeconds": 0.02,
                    "removedRealServers": 1,
                    "flushedConnections": 3,
                    "deletedConntrackEntries": 3,
                },
                {
                    "intent": "kube-dns-flush-0b6c1f4e9a",
                    "outcome": "AlreadyClean",
                    "completedAt": ts(3 * 3600),
                },
            ],
        ),
        health(
            "node-4",
            20 * 60,
            kubeProxy={
                "freshness": "Unknown",
                "reason": "http://127.0.0.1:10249/metrics: connection refused",
            },
        ),
    ]


def event(
    name: str, reason: str, kind: str, about: str, seconds_ago: float, message: str, **extra: Any
) -> JsonObject:
    warning = reason in {
        "KubeProxyRestarted",
        "RemediationHeld",
        "KubeProxySyncStale",
        "RemediationFailed",
        "SysctlNotEnforced",
    }
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": "kube-system" if kind == "Service" else "default"},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": kind,
            "name": about,
            **({"namespace": "kube-system"} if kind == "Service" else {}),
        },
        "reason": reason,
        "message": message,
        "type": "Warning" if warning else "Normal",
        "count": extra.get("count", 1),
        "firstTimestamp": ts(extra.get("first", seconds_ago)),
        "lastTimestamp": ts(seconds_ago),
        "source": {"component": "proxymedic-operator"},
        "reportingComponent": "proxymedic-operator",
        "reportingInstance": "proxymedic-operator-0",
    }


def events() -> list[JsonObject]:
    return [
        event(
            "kube-dns.1",
            "StaleConnectionsFlushed",
            "Service",
            "kube-dns",
            192,
            "10.244.1.11 left kube-system/kube-dns (10.96.0.10:53/UDP): 9 connections flushed, "
            "3 real servers removed; 3 of 3 nodes changed, 0 already clean in 61ms "
            "[intent kube-dns-flush-5d1c0b7e21]",
        ),
        event(
            "node-3.1",
            "KubeProxyRestarted",
            "Node",
            "node-3",
            95,
            "deleted kube-proxy pod kube-proxy-x7k2p on node-3: backend 10.244.1.20 of kube-system/kube-dns "
            "(10.96.0.10:53/UDP) has no real server on this node [policy coredns]",
        ),
        event(
            "node-3.2",
            "RemediationHeld",
            "Node",
            "node-3",
            12,
            "NodeCooldown: RestartKubeProxy on node node-3: the previous one ran 1m23s ago, cooldown is 5m "
            "[policy coredns]",
        ),
        event(
            "node-3.3",
            "KubeProxySyncStale",
            "Node",
            "node-3",
            50,
            "kube-proxy's rules miss live backends",
        ),
        event("node-2.2", "SysctlNotEnforced", "Node", "node-2", 2 * 3600, NODE_2_GAP.message()),
        event(
            "node-2.1",
            "SysctlsEnforced",
            "Node",
            "node-2",
            2 * 3600 + 60,
            "EnforceSysctls: set net.ipv4.vs.expire_nodest_conn from 0 to 1; 1 of 1 nodes changed, 0 already "
            "clean in 8ms [intent node-2-sysctls-e808e72cb5]",
            count=2,
        ),
    ]


def service() -> JsonObject:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
        "spec": {
            "clusterIP": VIP,
            "clusterIPs": [VIP],
            "ports": [
                {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 53},
                {"name": "dns-tcp", "protocol": "TCP", "port": 53, "targetPort": 53},
            ],
        },
    }


def endpoint_slice() -> JsonObject:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kube-dns-abcde",
            "namespace": "kube-system",
            "labels": {"kubernetes.io/service-name": "kube-dns"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in LIVE],
        "ports": [
            {"name": "dns", "protocol": "UDP", "port": 53},
            {"name": "dns-tcp", "protocol": "TCP", "port": 53},
        ],
    }


def intent() -> JsonObject:
    return {
        "apiVersion": "proxymedic.io/v1alpha1",
        "kind": "RemediationIntent",
        "metadata": {"name": "kube-dns-flush-77aa01c3d2"},
        "spec": {
            "policyName": "coredns",
            "action": "FlushStaleBackends",
            "service": {
                "namespace": "kube-system",
                "name": "kube-dns",
                "clusterIPs": [VIP],
                "ports": [{"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 53}],
            },
            "deadBackends": ["10.244.1.9"],
            "liveBackends": LIVE,
            "steps": ["RemoveRealServers", "FlushConnections"],
            "allNodes": True,
            "decidedAt": ts(2),
            "expiresAt": ts(-598),
        },
    }


def register_crds(api: EmulatorThread) -> None:
    for info in KINDS:
        api.call(api.emulator.register_crd, build_crd(info))


def populate(api: EmulatorThread) -> None:
    """Create the fixed cluster through the emulator's store, as the components would over HTTP."""
    import asyncio

    from proxymedic.kube.client import Connection, KubeClient
    from proxymedic.kube.resources import (
        ENDPOINT_SLICES,
        EVENTS,
        INTENTS,
        NODE_HEALTHS,
        NODES,
        POLICIES,
        SERVICES,
    )

    async def create() -> None:
        async with KubeClient(Connection(server=api.url, ssl_context=False)) as client:
            body, status = policy()
            await client.create(POLICIES, body)
            await client.patch(POLICIES, "coredns", {"status": status}, subresource="status")
            for name in ("node-1", "node-2", "node-3", "node-4", "node-5"):
                await client.create(NODES, node(name))
            for body, status in healths():
                await client.create(NODE_HEALTHS, body)
                await client.patch(
                    NODE_HEALTHS, body["metadata"]["name"], {"status": status}, subresource="status"
                )
            for item in events():
                await client.create(EVENTS, item, item["metadata"]["namespace"])
            await client.create(SERVICES, service(), "kube-system")
            await client.create(ENDPOINT_SLICES, endpoint_slice(), "kube-system")
            await client.create(INTENTS, intent())

    asyncio.run(create())
