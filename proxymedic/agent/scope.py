"""Which virtual servers the agent looks up: those every policy's status lists for agents.

The operator writes ``status.sensing`` into each policy (``proxymedic.operator.sensing_scope``).
The agent looks up the union, one virtual server at a time, instead of dumping its node's IPVS
table, so a round costs what the policies select. Whatever is not known for sure makes the
scope None, and the agent dumps its table as it always could: a policy whose status has no
``sensing`` yet (just created, or written by an older operator), a list the operator marked
incomplete, a status that does not parse, or the policies not read yet. A virtual server the
agent did not look up is absent from its report, and the operator judges only the virtual
servers a report holds: a narrower scope can hide drift, never invent it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from proxymedic.api.health import MAX_VIRTUAL_SERVERS
from proxymedic.api.policy import SensingScope, ServiceProtocol
from proxymedic.dataplane.types import L4Protocol, ServiceKey


def policy_scope(raw: object) -> SensingScope | None:
    """A policy object's ``status.sensing``; None where it is absent or does not parse."""
    status = raw.get("status") if isinstance(raw, Mapping) else None
    sensing = status.get("sensing") if isinstance(status, Mapping) else None
    if not isinstance(sensing, Mapping):
        return None
    try:
        return SensingScope.model_validate(sensing)
    except ValidationError:
        return None


def node_internal_ips(node: Mapping[str, Any]) -> tuple[str, ...]:
    """A Node's InternalIPs: where kube-proxy programs NodePorts by default (as the expectation)."""
    status = node.get("status")
    addresses = status.get("addresses") if isinstance(status, Mapping) else None
    out: list[str] = []
    for entry in addresses if isinstance(addresses, list) else []:
        if isinstance(entry, Mapping) and entry.get("type") == "InternalIP":
            try:
                out.append(str(ipaddress.ip_address(str(entry.get("address")))))
            except ValueError:
                continue
    return tuple(dict.fromkeys(out))


def sensing_keys(
    scopes: Iterable[SensingScope | None], node_addresses: Iterable[str]
) -> frozenset[ServiceKey] | None:
    """The UDP virtual servers to look up (reports carry UDP ones only); None: dump the table."""
    addresses = [ipaddress.ip_address(address) for address in node_addresses]
    keys: set[ServiceKey] = set()
    for scope in scopes:
        if scope is None or not scope.complete:
            return None
        for vs in scope.virtual_servers:
            if vs.protocol is ServiceProtocol.UDP:
                keys.add(ServiceKey(L4Protocol.UDP, ipaddress.ip_address(vs.address), vs.port))
        for node_port in scope.node_ports:
            if node_port.protocol is ServiceProtocol.UDP:
                keys.update(ServiceKey(L4Protocol.UDP, address, node_port.port) for address in addresses)
    if len(keys) > MAX_VIRTUAL_SERVERS:
        return None  # one dump costs less than this many lookups, and a report holds no more
    return frozenset(keys)
