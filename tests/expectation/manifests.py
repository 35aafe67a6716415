"""Builders of valid Kubernetes manifests for the expectation matrix, and the cluster they live in.

The cluster looks like a three-worker kind cluster (dual-stack): nodes ``kind-worker``,
``kind-worker2`` and ``kind-worker3`` in zones a, b and c, InternalIPs on kind's Docker network,
pods in 10.244.0.0/16 and fd00:10:244::/56, Services in 10.96.0.0/16 and fd00:10:96::/112.
Services have no selector and their EndpointSlices are managed by ``expect.proxymedic.io``, so
a real cluster's EndpointSlice controller leaves them as written; load-balancer ingress lives in
``status`` and is written through the status subresource. Service addresses avoid those a
cluster allocates itself (10.96.0.1 for ``kubernetes``, 10.96.0.10 for DNS), whose virtual
servers the kernel also shows: compare against ``proxymedic expect`` read from that cluster,
or keep only the matrix's addresses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

Manifest = dict[str, Any]

NAMESPACE = "expect"
MANAGED_BY = "expect.proxymedic.io"
W1, W2, W3 = "kind-worker", "kind-worker2", "kind-worker3"
NODE_NAMES = (W1, W2, W3)
ZONES = {W1: "zone-a", W2: "zone-b", W3: "zone-c"}
NODE_IPV4 = {W1: "172.18.0.3", W2: "172.18.0.4", W3: "172.18.0.5"}
NODE_IPV6 = {W1: "fc00:f853:ccd:e793::3", W2: "fc00:f853:ccd:e793::4", W3: "fc00:f853:ccd:e793::5"}


def node(name: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "topology.kubernetes.io/zone": ZONES[name],
            },
        },
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": NODE_IPV4[name]},
                {"type": "InternalIP", "address": NODE_IPV6[name]},
                {"type": "Hostname", "address": name},
            ]
        },
    }


NODES = [node(name) for name in NODE_NAMES]
NAMESPACE_MANIFEST: Manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}


def port(
    name: str,
    number: int,
    protocol: str = "TCP",
    target: int | str | None = None,
    node_port: int | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "port": number,
        "protocol": protocol,
        "targetPort": target or number,
    }
    if node_port is not None:
        entry["nodePort"] = node_port
    return entry


def service(
    name: str,
    ports: Sequence[dict[str, Any]],
    cluster_ips: Sequence[str] = (),
    *,
    type_: str = "ClusterIP",
    labels: dict[str, str] | None = None,
    spec: dict[str, Any] | None = None,
    ingress: Sequence[dict[str, str]] = (),
) -> Manifest:
    body: dict[str, Any] = {"type": type_, "ports": list(ports)}
    if cluster_ips:
        families = ["IPv6" if ":" in ip else "IPv4" for ip in cluster_ips if ip != "None"]
        body |= {"clusterIP": cluster_ips[0], "clusterIPs": list(cluster_ips)}
        body["ipFamilyPolicy"] = "RequireDualStack" if len(families) > 1 else "SingleStack"
        if families:
            body["ipFamilies"] = families
    body |= spec or {}
    manifest: Manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": name, **(labels or {})}},
        "spec": body,
    }
    if ingress:
        manifest["status"] = {"loadBalancer": {"ingress": list(ingress)}}
    return manifest


def endpoint(
    address: str,
    node_name: str | None,
    *,
    ready: bool = True,
    serving: bool | None = None,
    terminating: bool = False,
    zones: Iterable[str] = (),
    for_nodes: Iterable[str] = (),
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "addresses": [address],
        "conditions": {
            "ready": ready,
            "serving": ready if serving is None else serving,
            "terminating": terminating,
        },
    }
    if node_name is not None:
        entry |= {"nodeName": node_name, "zone": ZONES[node_name]}
    hints: dict[str, Any] = {}
    if zones:
        hints["forZones"] = [{"name": zone} for zone in zones]
    if for_nodes:
        hints["forNodes"] = [{"name": name} for name in for_nodes]
    if hints:
        entry["hints"] = hints
    return entry


def endpoint_slice(
    service_name: str,
    suffix: str,
    endpoints: Sequence[dict[str, Any]],
    ports: Sequence[tuple[str, int, str]],
    address_type: str = "IPv4",
    labels: dict[str, str] | None = None,
) -> Manifest:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service_name}-{suffix}",
            "namespace": NAMESPACE,
            "labels": {
                "kubernetes.io/service-name": service_name,
                "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
                **(labels or {}),
            },
        },
        "addressType": address_type,
        "endpoints": list(endpoints),
        "ports": [{"name": name, "port": number, "protocol": protocol} for name, number, protocol in ports],
    }


VirtualServerRow = tuple[str, int, str, tuple[str, ...]]
"""(address, port, protocol, real servers as "address:port" or "[v6]:port")."""


def vs(address: str, port_number: int, protocol: str, *real_servers: str) -> VirtualServerRow:
    return (address, port_number, protocol, real_servers)


def on_every_node(*rows: VirtualServerRow) -> dict[str, list[VirtualServerRow]]:
    return {name: list(rows) for name in NODE_NAMES}
