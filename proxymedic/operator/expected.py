"""A policy's selected virtual servers per node, from what kube-proxy should have programmed there.

``proxymedic.expectation`` answers per node and per address family; drift judges a node's
report against that answer instead of one live set per Service, which mixed families, ignored
traffic policies and topology, and missed NodePort, externalIP and load-balancer virtual
servers.

Most Services look the same from every node (no Local traffic policy, no topology hints, no
NodePort): their answer is computed once per selection and shared. Only the others are
computed per node, and kept until a Service, an EndpointSlice or a policy changes (the whole
selection is rebuilt then) or the node's own object changes; at thousands of nodes that keeps
a report's judgement as cheap as before.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Iterable, Mapping

from proxymedic.api.health import ProxyMode
from proxymedic.expectation import NodeSpec, ProxyOptions, ServiceSpec, SliceSpec, expect_node
from proxymedic.operator.drift import SelectedVip, Selection, VipKey


class NodeSelection(Selection):
    def __init__(
        self,
        selected: Mapping[VipKey, SelectedVip],
        services: Iterable[ServiceSpec],
        slices: Iterable[SliceSpec],
        nodes: Mapping[str, NodeSpec],
        protocols: frozenset[str],
    ) -> None:
        super().__init__(selected)
        # Any ClusterIP entry names the Service's policy and live backends: they are per Service.
        self._by_service = {(sel.service.namespace, sel.service.name): sel for sel in selected.values()}
        self._nodes = nodes
        self._protocols = protocols
        chosen = [slice_ for slice_ in slices if slice_.service_key in self._by_service]
        hinted = {s.service_key for s in chosen if any(e.zone_hints or e.node_hints for e in s.endpoints)}
        shared: list[ServiceSpec] = []
        self._per_node: list[ServiceSpec] = []
        for service in services:
            if service.key not in self._by_service:
                continue
            local = service.internal_policy_local or service.external_policy_local
            node_ports = any(port.node_port for port in service.ports)
            (self._per_node if local or node_ports or service.key in hinted else shared).append(service)
        per_node_keys = {service.key for service in self._per_node}
        self._per_node_slices = [slice_ for slice_ in chosen if slice_.service_key in per_node_keys]
        # Seen from no node in particular: no endpoint is local, no zone matches, no NodePort. The
        # same in every mode: the modes differ only under a Local traffic policy (per node).
        self._shared = self._selected(NodeSpec("", {}, ()), shared, chosen)
        self._cache: dict[tuple[str, ProxyMode], tuple[NodeSpec, Mapping[VipKey, SelectedVip]]] = {}

    def on(self, node: str, mode: ProxyMode = ProxyMode.IPVS) -> Mapping[VipKey, SelectedVip]:
        if not self._per_node:
            return self._shared
        spec = self._nodes.get(node) or NodeSpec(node, {}, ())
        cached = self._cache.get((node, mode))
        if cached is not None and cached[0] == spec:
            return cached[1]
        per_node = self._selected(spec, self._per_node, self._per_node_slices, mode)
        result = ChainMap(per_node, self._shared)
        self._cache[(node, mode)] = (spec, result)
        return result

    def _selected(
        self,
        node: NodeSpec,
        services: list[ServiceSpec],
        slices: list[SliceSpec],
        mode: ProxyMode = ProxyMode.IPVS,
    ) -> dict[VipKey, SelectedVip]:
        result: dict[VipKey, SelectedVip] = {}
        if not services:
            return result
        options = ProxyOptions(mode=str(mode))
        for vs in expect_node(node, services, slices, options).virtual_servers:
            namespace, _, name = vs.service.partition("/")
            base = self._by_service.get((namespace, name))
            if base is None or vs.protocol not in self._protocols:
                continue
            port = vs.real_servers[0].port if vs.real_servers else base.target_port
            expected = frozenset(rs.address for rs in vs.real_servers)
            result[vs.key] = SelectedVip(base.service, base.policy, base.live, port, expected)
        return result
