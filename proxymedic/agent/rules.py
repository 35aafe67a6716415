"""kube-proxy's rules in nftables and iptables mode, reported as IPVS mode's virtual servers are.

Where there is no IPVS, the agent reads kube-proxy's rules (``proxymedic.dataplane.rules``),
turns them into the per-node view (``proxymedic.expectation.rules``: per Service address and
port, the endpoints the rules DNAT to) and reports each UDP one as a virtual server: its real
servers are those endpoints, and the conntrack entries to the address are counted by the
endpoint that answers them. Entries answered by an endpoint the rules no longer name are
reported as orphaned connections, as IPVS mode reports connections to a removed real server:
the operator judges both modes with the same drift rules, against the expectation of the
node's mode.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from proxymedic.api.health import ProxyMode
from proxymedic.dataplane.rules import local_addresses, read_iptables, read_nftables
from proxymedic.dataplane.types import Endpoint, L4Protocol, RealServer, ServiceKey, VirtualService

if TYPE_CHECKING:  # the parsers load with the first read: an IPVS-mode agent never needs them
    from proxymedic.expectation import NodeExpectation, VirtualServer

RULE_MODES = frozenset({ProxyMode.NFTABLES, ProxyMode.IPTABLES})
RulesReader = Callable[[ProxyMode], "NodeExpectation"]
"""Reads kube-proxy's rules of one mode in this network namespace; raises DataplaneError or
RulesParseError when they cannot be read or have a shape it does not know."""


def read_programmed(
    mode: ProxyMode, node: str = "", addresses: Collection[str] | None = None
) -> NodeExpectation:
    """What kube-proxy programmed here; NodePorts on ``addresses`` (None: this namespace's own)."""
    from proxymedic.expectation.rules import parse_iptables_save, parse_nftables_json

    local = tuple(addresses) if addresses is not None else local_addresses()
    if mode is ProxyMode.NFTABLES:
        return parse_nftables_json(read_nftables(), node, local_addresses=local)
    if mode is ProxyMode.IPTABLES:
        ipv4, ipv6 = read_iptables()
        return parse_iptables_save(ipv4, ipv6, node, local_addresses=local)
    raise ValueError(f"kube-proxy's {mode} mode has no rules to read")


def service_key(vs: VirtualServer) -> ServiceKey | None:
    """The virtual server's key as IPVS names it; None for a protocol IPVS mode does not know."""
    try:
        return ServiceKey(L4Protocol(vs.protocol), ipaddress.ip_address(vs.address), vs.port)
    except ValueError:
        return None


def selected_udp(programmed: NodeExpectation, scope: Collection[ServiceKey] | None) -> list[ServiceKey]:
    """The UDP addresses the rules serve, within the scope (None: all), in IPVS mode's order."""
    keys = [key for key in map(service_key, programmed.virtual_servers) if key is not None]
    udp = [key for key in keys if key.protocol is L4Protocol.UDP and (scope is None or key in scope)]
    return sorted(udp, key=ServiceKey.sort_key)


def virtual_services(programmed: NodeExpectation, keys: list[ServiceKey]) -> list[VirtualService]:
    """The rules of ``keys`` as IPVS would list them: each endpoint a real server of weight 1."""
    by_key = {service_key(vs): vs for vs in programmed.virtual_servers}
    return [
        VirtualService(
            key,
            "rules",
            tuple(
                RealServer(Endpoint(ipaddress.ip_address(rs.address), rs.port), weight=1)
                for rs in by_key[key].real_servers
            ),
        )
        for key in keys
    ]
