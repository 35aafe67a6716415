"""The expectation matrix: Service shapes as manifests, with what kube-proxy (IPVS) programs per node.

Each case is a list of manifests (Services and EndpointSlices; the three Nodes of
``manifests.NODES`` are added to every case) and, per node, the virtual servers with their
real servers. The same manifests can be applied to a real cluster and the kernel's
``ipvsadm -Ln``, parsed by ``parse_ipvsadm``, compared with the rows here (NodePorts: pass the
node's local addresses as ``ProxyOptions.node_port_addresses``; a kind node has only its
InternalIPs besides loopback).
"""

from __future__ import annotations

from tests.expectation.cases_endpoints import CASES as ENDPOINT_CASES
from tests.expectation.cases_exposure import CASES as EXPOSURE_CASES
from tests.expectation.matrix import Case

__all__ = ["CASES", "Case"]

CASES: list[Case] = [*ENDPOINT_CASES, *EXPOSURE_CASES]
