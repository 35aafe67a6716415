"""What agents look up for a policy: the virtual servers of the Services it governs.

The operator writes it into the policy's status (``status.sensing``); agents read every policy's
and look up those virtual servers one by one instead of dumping their node's IPVS table. The
list is a superset of what drift judges on any node: the ClusterIPs, externalIPs and load-balancer
IPs are the same everywhere, and a NodePort becomes a virtual server on each of a node's
InternalIPs, which the agent reads from its Node as ``proxymedic.expectation`` does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable

from proxymedic.api.policy import (
    MAX_SENSED_VIRTUAL_SERVERS,
    SensedAddress,
    SensedNodePort,
    SensingScope,
    ServiceProtocol,
)
from proxymedic.expectation import ServiceSpec


def _address_order(item: tuple[str, int, str]) -> tuple[int, int, str, int]:
    ip = ipaddress.ip_address(item[0])
    return (ip.version, int(ip), item[2], item[1])


def sensing_scope(services: Iterable[ServiceSpec], protocols: Collection[str]) -> SensingScope:
    """The virtual servers of these Services' ports of the given protocols, sorted, without repeats."""
    addresses: set[tuple[str, int, str]] = set()
    node_ports: set[tuple[int, str]] = set()
    for service in services:
        for port in service.ports:
            if port.protocol not in protocols or port.protocol not in ServiceProtocol.__members__:
                continue
            for address in (*service.cluster_ips, *service.external_ips, *service.load_balancer_vips):
                try:
                    canonical = str(ipaddress.ip_address(address))
                except ValueError:
                    continue  # kube-proxy programs nothing for an address it cannot parse
                addresses.add((canonical, port.port, port.protocol))
            if port.node_port:
                node_ports.add((port.node_port, port.protocol))
    if len(addresses) > MAX_SENSED_VIRTUAL_SERVERS or len(node_ports) > MAX_SENSED_VIRTUAL_SERVERS:
        return SensingScope(complete=False)
    return SensingScope(
        virtual_servers=[
            SensedAddress(address=a, port=p, protocol=ServiceProtocol(proto))
            for a, p, proto in sorted(addresses, key=_address_order)
        ],
        node_ports=[
            SensedNodePort(port=p, protocol=ServiceProtocol(proto)) for p, proto in sorted(node_ports)
        ],
    )
