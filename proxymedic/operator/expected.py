"""A policy's selected virtual servers per node, from what kube-proxy should have programmed there.

``proxymedic.expectation`` answers per node and per address family; drift judges a node's
report against that answer instead of one live set per Service, which mixed families, ignored
traffic policies and topology, and missed NodePort, externalIP and load-balancer virtual
servers. The answer is computed once per node and kept until a Service, an EndpointSlice or a
policy changes (the whole selection is rebuilt then) or the node's own object changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from proxymedic.expectation import NodeSpec, ServiceSpec, SliceSpec, expect_node
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
        self._services = [service for service in services if service.key in self._by_service]
        self._slices = [slice_ for slice_ in slices if slice_.service_key in self._by_service]
        self._nodes = nodes
        self._protocols = protocols
        self._cache: dict[str, tuple[NodeSpec, dict[VipKey, SelectedVip]]] = {}

    def on(self, node: str) -> Mapping[VipKey, SelectedVip]:
        spec = self._nodes.get(node) or NodeSpec(node, {}, ())
        cached = self._cache.get(node)
        if cached is not None and cached[0] == spec:
            return cached[1]
        result: dict[VipKey, SelectedVip] = {}
        for vs in expect_node(spec, self._services, self._slices).virtual_servers:
            namespace, _, name = vs.service.partition("/")
            base = self._by_service.get((namespace, name))
            if base is None or vs.protocol not in self._protocols:
                continue
            port = vs.real_servers[0].port if vs.real_servers else base.target_port
            expected = frozenset(rs.address for rs in vs.real_servers)
            result[vs.key] = SelectedVip(base.service, base.policy, base.live, port, expected)
        self._cache[node] = (spec, result)
        return result
