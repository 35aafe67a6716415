"""Which endpoints of a Service port kube-proxy may use on one node (its CategorizeEndpoints).

Usable means ready; only when no endpoint is usable does kube-proxy fall back to the endpoints
that are serving while terminating, separately for the cluster-wide set and the node-local set.
Topology hints narrow the cluster-wide set to the node (``forNodes``) or its zone
(``forZones``) when every ready endpoint carries such a hint and one matches; otherwise they
are ignored, so hints never leave a node with nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from proxymedic.expectation.model import EndpointSpec, Family, SliceSpec

PortKey = tuple[str, str]
"""(port name, protocol): how kube-proxy matches a Service port to EndpointSlice ports."""


class TopologyMode(StrEnum):
    NONE = ""
    PREFER_SAME_ZONE = "PreferSameZone"
    PREFER_SAME_NODE = "PreferSameNode"


@dataclass(frozen=True)
class PortEndpoint:
    """One endpoint of one Service port: the address and the port of the slice that listed it."""

    spec: EndpointSpec
    port: int
    local: bool

    @property
    def key(self) -> tuple[str, int]:
        return (self.spec.address, self.port)

    @property
    def serving_terminating(self) -> bool:
        return self.spec.serving and self.spec.terminating


def endpoints_by_port(
    slices: Iterable[SliceSpec], family: Family, node: str
) -> dict[PortKey, list[PortEndpoint]]:
    """Each slice gives its own port number to a port name (a named targetPort may differ per slice).

    The same address and port listed twice counts once; a local listing wins over another, as in
    kube-proxy's EndpointSliceCache. Slices are read in name order so the result is stable.
    """
    by_port: dict[PortKey, dict[tuple[str, int], PortEndpoint]] = {}
    for slice_ in sorted(slices, key=lambda s: s.name):
        if slice_.family is not family:
            continue
        for port in slice_.ports:
            found = by_port.setdefault((port.name, port.protocol), {})
            for spec in slice_.endpoints:
                endpoint = PortEndpoint(spec, port.port, local=bool(node) and spec.node_name == node)
                if endpoint.key not in found or endpoint.local:
                    found[endpoint.key] = endpoint
    return {key: list(found.values()) for key, found in by_port.items()}


def topology_mode(
    endpoints: list[PortEndpoint], node: str, zone: str, prefer_same_node: bool
) -> TopologyMode:
    """kube-proxy's topologyModeFromHints: hints count only when every ready endpoint has one."""
    ready = [endpoint.spec for endpoint in endpoints if endpoint.spec.ready]
    if not ready:
        return TopologyMode.NONE
    # A node that no hint names ignores node hints but may still use zone hints.
    all_node_hints = all(spec.node_hints for spec in ready)
    if prefer_same_node and all_node_hints and any(node in spec.node_hints for spec in ready):
        return TopologyMode.PREFER_SAME_NODE
    if all(spec.zone_hints for spec in ready) and any(zone in spec.zone_hints for spec in ready):
        return TopologyMode.PREFER_SAME_ZONE
    return TopologyMode.NONE


def _available(endpoint: PortEndpoint, mode: TopologyMode, node: str, zone: str) -> bool:
    if mode is TopologyMode.PREFER_SAME_NODE:
        return node in endpoint.spec.node_hints
    if mode is TopologyMode.PREFER_SAME_ZONE:
        return zone in endpoint.spec.zone_hints
    return True


@dataclass(frozen=True)
class Categorized:
    cluster: list[PortEndpoint]
    """For traffic policy Cluster (empty when the port never uses it)."""
    local: list[PortEndpoint]
    """For traffic policy Local (empty when the port never uses it)."""


def categorize(
    endpoints: list[PortEndpoint],
    *,
    uses_cluster: bool,
    uses_local: bool,
    node: str,
    zone: str,
    prefer_same_node: bool,
) -> Categorized:
    cluster: list[PortEndpoint] = []
    local: list[PortEndpoint] = []
    if uses_cluster:
        mode = topology_mode(endpoints, node, zone, prefer_same_node)
        cluster = [e for e in endpoints if e.spec.ready and _available(e, mode, node, zone)]
        if not cluster:
            # No ready endpoint anywhere (topology never empties the set): serving terminating ones.
            cluster = [e for e in endpoints if e.serving_terminating]
    if uses_local:
        local = [e for e in endpoints if e.local and e.spec.ready]
        if not local:
            local = [e for e in endpoints if e.local and e.serving_terminating]
    return Categorized(cluster, local)
