"""What kube-proxy in IPVS mode programs on one node: virtual servers and their real servers.

kube-proxy runs one proxier per address family; each sees a Service only through its address
of that family, and endpoints only of that family. For every Service port it programs (as its
IPVS proxier's syncProxyRules and syncEndpoint):

- the ClusterIP, with the cluster-wide endpoints, or the node-local ones under
  ``internalTrafficPolicy: Local``;
- each externalIP and each load-balancer ingress IP in VIP mode, and the NodePort on each node
  address, with the cluster-wide endpoints, or the node-local ones under
  ``externalTrafficPolicy: Local``.

Where a Local policy finds no local endpoint, IPVS mode programs the cluster-wide set instead
(empty when the port never uses it), so pods on the node can still reach the Service. Every
real server gets weight 1; removed TCP real servers linger at weight 0 while connections drain,
which no API object shows (see ``proxymedic.operator.drift``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from proxymedic.expectation.categorize import PortEndpoint, categorize, endpoints_by_port
from proxymedic.expectation.model import (
    Family,
    NodeSpec,
    ServicePortSpec,
    ServiceSpec,
    SliceSpec,
    canonical_ip,
    ip_sort_key,
    parse_node,
    parse_service,
    parse_slice,
)

MODE = "ipvs"
RULE_MODES = ("nftables", "iptables")


@dataclass(frozen=True)
class RealServer:
    address: str
    port: int

    def sort_key(self) -> tuple[tuple[int, int], int]:
        return (ip_sort_key(self.address), self.port)


@dataclass(frozen=True)
class VirtualServer:
    address: str
    port: int
    protocol: str
    real_servers: tuple[RealServer, ...]
    service: str = field(default="", compare=False)
    """namespace/name, for people; not part of what the kernel shows."""
    kind: str = field(default="", compare=False)
    """ClusterIP, ExternalIP, LoadBalancer or NodePort."""

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.address, self.port, self.protocol)

    def sort_key(self) -> tuple[tuple[int, int], int, str]:
        return (ip_sort_key(self.address), self.port, self.protocol)


@dataclass(frozen=True)
class NodeExpectation:
    node: str
    virtual_servers: tuple[VirtualServer, ...]
    mode: str = MODE

    def as_json(self) -> dict[str, Any]:
        """The shape ``proxymedic expect -o json`` prints and ``parse_ipvsadm`` returns."""
        return {
            "node": self.node,
            "mode": self.mode,
            "virtualServers": [
                {
                    "address": vs.address,
                    "port": vs.port,
                    "protocol": vs.protocol,
                    "realServers": [{"address": rs.address, "port": rs.port} for rs in vs.real_servers],
                }
                for vs in self.virtual_servers
            ],
        }


@dataclass(frozen=True)
class ProxyOptions:
    """kube-proxy settings the API objects do not show."""

    node_port_addresses: tuple[str, ...] | None = None
    """The node addresses NodePorts are programmed on. None: the Node's InternalIPs. kube-proxy's
    default (no ``--nodeport-addresses``) is every local address but loopback, IPv6 link-local and
    kube-ipvs0's; pass them here when the node has more than its InternalIPs."""
    prefer_same_node_hints: bool = True
    """The PreferSameTrafficDistribution feature gate (``hints.forNodes``), on by default since 1.34."""
    mode: str = MODE
    """kube-proxy's mode: ``ipvs``, ``nftables`` or ``iptables`` (see ``RULE_MODES``)."""


def _real_servers(endpoints: Iterable[PortEndpoint]) -> tuple[RealServer, ...]:
    unique = {RealServer(endpoint.spec.address, endpoint.port) for endpoint in endpoints}
    return tuple(sorted(unique, key=RealServer.sort_key))


def _service_port(
    service: ServiceSpec,
    port: ServicePortSpec,
    family: Family,
    endpoints: list[PortEndpoint],
    node: NodeSpec,
    node_addresses: Sequence[str],
    options: ProxyOptions,
) -> list[VirtualServer]:
    cluster_ip = service.cluster_ip(family)
    assert cluster_ip is not None  # callers skip families the Service has no address of
    external_ips = [ip for ip in service.external_ips if Family.of(ip) is family]
    lb_vips = [ip for ip in service.load_balancer_vips if Family.of(ip) is family]
    externally_accessible = port.node_port != 0 or bool(external_ips) or bool(lb_vips)
    # ServicePort's UsesClusterEndpoints / UsesLocalEndpoints.
    uses_cluster = not service.internal_policy_local or externally_accessible
    uses_local = service.internal_policy_local or (service.external_policy_local and externally_accessible)
    found = categorize(
        endpoints,
        uses_cluster=uses_cluster,
        uses_local=uses_local,
        node=node.name,
        zone=node.zone,
        prefer_same_node=options.prefer_same_node_hints,
    )

    def chosen(only_local: bool) -> tuple[RealServer, ...]:
        # syncEndpoint: Local with no local endpoint falls back to the cluster-wide set in IPVS mode.
        return _real_servers(found.local if only_local and found.local else found.cluster)

    if options.mode in RULE_MODES:
        # No fallback: Local with no local endpoint drops. External traffic from the node itself
        # (and from its pods) short-circuits to the cluster-wide endpoints, so an external address
        # under externalTrafficPolicy Local reaches both sets.
        internal = _real_servers(found.local if service.internal_policy_local else found.cluster)
        external = _real_servers(
            [*found.local, *found.cluster] if service.external_policy_local else found.cluster
        )
    else:
        internal = chosen(service.internal_policy_local)
        external = chosen(service.external_policy_local)
    name = f"{service.namespace}/{service.name}"
    servers = [VirtualServer(cluster_ip, port.port, port.protocol, internal, name, "ClusterIP")]
    servers += [
        VirtualServer(ip, port.port, port.protocol, external, name, "ExternalIP") for ip in external_ips
    ]
    servers += [VirtualServer(ip, port.port, port.protocol, external, name, "LoadBalancer") for ip in lb_vips]
    if port.node_port:
        servers += [
            VirtualServer(ip, port.node_port, port.protocol, external, name, "NodePort")
            for ip in node_addresses
            if Family.of(ip) is family
        ]
    return servers


def expect_node(
    node: NodeSpec,
    services: Iterable[ServiceSpec],
    slices: Iterable[SliceSpec],
    options: ProxyOptions = ProxyOptions(),
) -> NodeExpectation:
    """The virtual servers kube-proxy (IPVS mode) programs on ``node``, sorted (see ``sort_key``).

    When two Services claim the same address, port and protocol, the first by namespace/name
    keeps it; kube-proxy would let them fight.
    """
    by_service: dict[tuple[str, str], list[SliceSpec]] = {}
    for slice_ in slices:
        by_service.setdefault(slice_.service_key, []).append(slice_)
    raw_addresses = node.internal_ips if options.node_port_addresses is None else options.node_port_addresses
    node_addresses = [ip for ip in (canonical_ip(raw) for raw in raw_addresses) if ip is not None]
    programmed: dict[tuple[str, int, str], VirtualServer] = {}
    for service in sorted(services, key=lambda s: s.key):
        for family in (Family.IPV4, Family.IPV6):
            if service.cluster_ip(family) is None:
                continue
            endpoints = endpoints_by_port(by_service.get(service.key, []), family, node.name)
            for port in service.ports:
                port_endpoints = endpoints.get((port.name, port.protocol), [])
                for vs in _service_port(service, port, family, port_endpoints, node, node_addresses, options):
                    programmed.setdefault(vs.key, vs)
    ordered = sorted(programmed.values(), key=VirtualServer.sort_key)
    return NodeExpectation(node.name, tuple(ordered), options.mode)


@dataclass
class Objects:
    """Services, EndpointSlices and Nodes as kube-proxy sees them, parsed from API dicts."""

    services: list[ServiceSpec] = field(default_factory=list)
    slices: list[SliceSpec] = field(default_factory=list)
    nodes: dict[str, NodeSpec] = field(default_factory=dict)

    @classmethod
    def from_dicts(cls, items: Iterable[Mapping[str, Any]]) -> Objects:
        """Objects of other kinds are ignored; ``kind: List`` is unwrapped."""
        objects = cls()
        for item in items:
            objects.add(item)
        return objects

    def add(self, item: Mapping[str, Any]) -> None:
        kind = item.get("kind")
        if kind == "List" or (isinstance(kind, str) and kind.endswith("List")):
            for child in item.get("items") or []:
                if isinstance(child, Mapping):
                    self.add({"kind": kind.removesuffix("List"), **child} if kind != "List" else child)
        elif kind == "Service":
            service = parse_service(item)
            if service is not None:
                self.services.append(service)
        elif kind == "EndpointSlice":
            slice_ = parse_slice(item)
            if slice_ is not None:
                self.slices.append(slice_)
        elif kind == "Node":
            node = parse_node(item)
            self.nodes[node.name] = node


def expect_from_objects(
    items: Iterable[Mapping[str, Any]], node_name: str, options: ProxyOptions = ProxyOptions()
) -> NodeExpectation:
    """``expect_node`` from API dicts; a node without a Node object has no addresses or labels."""
    objects = Objects.from_dicts(items)
    node = objects.nodes.get(node_name, NodeSpec(node_name, {}, ()))
    return expect_node(node, objects.services, objects.slices, options)
