"""What kube-proxy in nftables or iptables mode programmed on a node, read from its rules.

Both readers return the per-node view ``proxymedic expect`` gives and ``parse_ipvsadm`` reads
from IPVS: per Service address (ClusterIP, externalIP, load-balancer IP, or a NodePort on each
address that accepts NodePorts), the endpoints the rules DNAT its traffic to. An address whose
rules drop or reject its traffic (kube-proxy's "has no endpoints") has none.

The endpoints of an address are every DNAT target its rules can reach, following jumps and
gotos from its entry: in nftables mode from the ``service-ips`` and ``service-nodeports`` maps
of kube-proxy's ``ip`` and ``ip6`` tables, in iptables mode from the ``KUBE-SERVICES`` and
``KUBE-NODEPORTS`` chains of the nat table. Chain names are not relied on, so the layouts of
kube-proxy's versions (per-endpoint chains or a DNAT map, traffic-policy chains) read alike.

- nftables: libnftables' JSON (``nft -j list ruleset``, or ``proxymedic.dataplane.rules``).
- iptables: ``iptables-save`` and ``ip6tables-save`` text. With the nf_tables backend the same
  rules are visible to libnftables too, but their DNAT targets and matches are xtables
  extensions that its JSON shows by name only (``{"xt": {"type": "target", "name": "DNAT"}}``);
  the ``-save`` format is the one kube-proxy itself reads back.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from proxymedic.expectation.ipvs import NodeExpectation, RealServer, VirtualServer
from proxymedic.expectation.model import Family, canonical_ip

TABLE = "kube-proxy"
PROTOCOLS = {"tcp": "TCP", "udp": "UDP", "sctp": "SCTP"}


class RulesParseError(ValueError):
    """The rules are not in the shape this reader knows; the message says where."""


@dataclass
class _Entries:
    """Entry points (address, port, protocol) and the chains they lead to, or None for a drop."""

    targets: dict[tuple[str, int, str], set[str]] = field(default_factory=dict)
    kinds: dict[tuple[str, int, str], str] = field(default_factory=dict)

    def add(self, address: str, port: int, protocol: str, chain: str | None, kind: str) -> None:
        key = (address, port, protocol)
        chains = self.targets.setdefault(key, set())
        if chain is not None:
            chains.add(chain)
        self.kinds.setdefault(key, kind)


def _result(node: str, mode: str, entries: _Entries, endpoints_of: Any) -> NodeExpectation:
    servers = []
    for (address, port, protocol), chains in entries.targets.items():
        found: set[RealServer] = set()
        for chain in chains:
            found |= endpoints_of(chain)
        ordered = tuple(sorted(found, key=RealServer.sort_key))
        servers.append(
            VirtualServer(address, port, protocol, ordered, "", entries.kinds[(address, port, protocol)])
        )
    return NodeExpectation(node, tuple(sorted(servers, key=VirtualServer.sort_key)), mode)


def _walk(start: str, edges: Mapping[str, set[str]], dnat: Mapping[str, set[RealServer]]) -> set[RealServer]:
    """Every DNAT target reachable from ``start`` through jumps and gotos."""
    seen: set[str] = set()
    pending = [start]
    found: set[RealServer] = set()
    while pending:
        chain = pending.pop()
        if chain in seen:
            continue
        seen.add(chain)
        found |= dnat.get(chain, set())
        pending.extend(edges.get(chain, ()))
    return found


# --- nftables ------------------------------------------------------------------------------------


def _element(raw: Any) -> Any:
    """An element as libnftables writes it: bare, or wrapped with its timeout or comment."""
    if isinstance(raw, Mapping) and "elem" in raw:
        inner = raw["elem"]
        return inner.get("val") if isinstance(inner, Mapping) else inner
    return raw


def _verdict_target(verdict: Any) -> str | None:
    if isinstance(verdict, Mapping):
        for kind in ("goto", "jump"):
            target = verdict.get(kind)
            if isinstance(target, Mapping) and isinstance(target.get("target"), str):
                return str(target["target"])
    return None


def _concat(raw: Any) -> list[Any]:
    value = _element(raw)
    if isinstance(value, Mapping) and isinstance(value.get("concat"), list):
        return list(value["concat"])
    return [value]


def _endpoint(address: Any, port: Any) -> RealServer | None:
    ip = canonical_ip(address)
    if ip is None or not isinstance(port, int) or isinstance(port, bool):
        return None
    return RealServer(ip, port)


def _dnat_targets(dnat: Mapping[str, Any]) -> Iterator[RealServer]:
    """``dnat to A:P`` or ``dnat to numgen ... map { i : A . P }`` (kube-proxy 1.33 and later)."""
    addr = dnat.get("addr")
    if isinstance(addr, Mapping) and isinstance(addr.get("map"), Mapping):
        data = addr["map"].get("data")
        if isinstance(data, Mapping) and isinstance(data.get("set"), list):
            for pair in data["set"]:
                if isinstance(pair, list) and len(pair) == 2:
                    parts = _concat(pair[1])
                    if len(parts) == 2 and (found := _endpoint(parts[0], parts[1])) is not None:
                        yield found
        return
    if (found := _endpoint(addr, dnat.get("port"))) is not None:
        yield found


def _nft_expressions(value: Any) -> Iterator[Mapping[str, Any]]:
    """Every mapping nested in a rule's expressions (verdict maps hold gotos of their own)."""
    if isinstance(value, Mapping):
        yield value
        for inner in value.values():
            yield from _nft_expressions(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _nft_expressions(inner)


def parse_nftables_json(
    document: Mapping[str, Any], node: str = "", *, local_addresses: Sequence[str] = ()
) -> NodeExpectation:
    """kube-proxy's ``ip`` and ``ip6`` ``kube-proxy`` tables from ``nft -j list ruleset``.

    ``local_addresses`` are the node's addresses, for a table that accepts NodePorts on every
    local address (``--nodeport-addresses`` unset) rather than on its ``nodeport-ips`` set.
    """
    objects = document.get("nftables")
    if not isinstance(objects, list):
        raise RulesParseError('not libnftables JSON: no "nftables" list')
    entries = _Entries()
    edges: dict[str, set[str]] = {}
    dnat: dict[str, set[RealServer]] = {}
    named: dict[tuple[str, str], list[Any]] = {}
    for obj in objects:
        if not isinstance(obj, Mapping):
            continue
        for kind in ("set", "map"):
            item = obj.get(kind)
            if isinstance(item, Mapping) and item.get("table") == TABLE:
                named[(str(item.get("family")), str(item.get("name")))] = list(item.get("elem") or [])
        rule = obj.get("rule")
        if isinstance(rule, Mapping) and rule.get("table") == TABLE:
            source = f"{rule.get('family')}/{rule.get('chain')}"
            for expression in _nft_expressions(rule.get("expr") or []):
                target = _verdict_target(expression)
                if target is not None:
                    edges.setdefault(source, set()).add(f"{rule.get('family')}/{target}")
                if isinstance(expression.get("dnat"), Mapping):
                    dnat.setdefault(source, set()).update(_dnat_targets(expression["dnat"]))
    for family in ("ip", "ip6"):
        maps = ("service-ips", "no-endpoint-services", "service-nodeports", "no-endpoint-nodeports")
        if not any((family, name) in named for name in maps):
            continue
        wanted = Family.IPV4 if family == "ip" else Family.IPV6
        if (family, "nodeport-ips") in named:
            raw_addresses: Iterable[Any] = (_element(e) for e in named[(family, "nodeport-ips")])
        else:
            raw_addresses = local_addresses
        node_ips = [ip for ip in (canonical_ip(a) for a in raw_addresses) if ip and Family.of(ip) is wanted]
        for map_name, kind in (("service-ips", "Service"), ("no-endpoint-services", "Service")):
            for pair in named.get((family, map_name), []):
                key, verdict = pair if isinstance(pair, list) and len(pair) == 2 else (None, None)
                parts = _concat(key)
                if len(parts) != 3 or (ip := canonical_ip(parts[0])) is None or not isinstance(parts[2], int):
                    raise RulesParseError(f"{family} {map_name}: unexpected element {pair!r}")
                target = _verdict_target(verdict) if map_name == "service-ips" else None
                entry = f"{family}/{target}" if target else None
                entries.add(ip, parts[2], PROTOCOLS.get(str(parts[1]), str(parts[1]).upper()), entry, kind)
        for map_name in ("service-nodeports", "no-endpoint-nodeports"):
            for pair in named.get((family, map_name), []):
                key, verdict = pair if isinstance(pair, list) and len(pair) == 2 else (None, None)
                parts = _concat(key)
                if len(parts) != 2 or not isinstance(parts[1], int):
                    raise RulesParseError(f"{family} {map_name}: unexpected element {pair!r}")
                target = _verdict_target(verdict) if map_name == "service-nodeports" else None
                entry = f"{family}/{target}" if target else None
                for ip in node_ips:
                    entries.add(
                        ip, parts[1], PROTOCOLS.get(str(parts[0]), str(parts[0]).upper()), entry, "NodePort"
                    )
    return _result(node, "nftables", entries, lambda chain: _walk(chain, edges, dnat))


# --- iptables ------------------------------------------------------------------------------------

_ENTRY_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-XLB-")


@dataclass(frozen=True)
class _Rule:
    chain: str
    destination: str | None
    protocol: str | None
    dport: int | None
    target: str | None
    to_destination: str | None
    dst_local: bool


def _address(text: str) -> str | None:
    host = text.split("/", 1)[0]
    return canonical_ip(host)


def _parse_rule(line: str) -> _Rule | None:
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise RulesParseError(f"cannot split {line!r}: {exc}") from None
    if len(words) < 2 or words[0] != "-A":
        return None
    chain = words[1]
    destination = protocol = target = to_destination = None
    dport: int | None = None
    dst_local = False
    negated = False
    i = 2
    while i < len(words):
        word = words[i]
        value = words[i + 1] if i + 1 < len(words) else ""
        if word == "!":
            negated = True
            i += 1
            continue
        if word in ("-d", "--destination") and not negated:
            destination = _address(value)
        elif word in ("-p", "--protocol") and not negated:
            protocol = PROTOCOLS.get(value.lower(), value.upper())
        elif word in ("--dport", "--destination-port") and not negated:
            dport = int(value) if value.isdigit() else None
        elif word in ("-j", "--jump", "-g", "--goto"):
            target = value
        elif word == "--to-destination":
            to_destination = value
        elif word == "--dst-type" and value == "LOCAL" and not negated:
            dst_local = True
        negated = False
        i += 2 if word.startswith("-") and value and not value.startswith("-") else 1
    return _Rule(chain, destination, protocol, dport, target, to_destination, dst_local)


def _to_destination(text: str) -> RealServer | None:
    """``10.244.1.10:53`` or ``[fd00:10:244::5]:53``."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    return _endpoint(host, int(port)) if port.isdigit() else None


def _tables(text: str) -> dict[str, list[_Rule]]:
    tables: dict[str, list[_Rule]] = {}
    current: list[_Rule] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            current = tables.setdefault(line[1:], [])
        elif line == "COMMIT":
            current = None
        elif line.startswith("-A ") and current is not None:
            rule = _parse_rule(line)
            if rule is not None:
                current.append(rule)
    return tables


def parse_iptables_save(
    ipv4: str, ipv6: str = "", node: str = "", *, local_addresses: Sequence[str] = ()
) -> NodeExpectation:
    """kube-proxy's rules from ``iptables-save`` and ``ip6tables-save`` (their nat and filter tables).

    ``local_addresses`` are the node's addresses, for NodePorts accepted on every local address
    (``--nodeport-addresses`` unset: ``-m addrtype --dst-type LOCAL``).
    """
    entries = _Entries()
    edges: dict[str, set[str]] = {}
    dnat: dict[str, set[RealServer]] = {}
    for family, text in ((Family.IPV4, ipv4), (Family.IPV6, ipv6)):
        tables = _tables(text)
        nat = tables.get("nat", [])
        prefix = f"{family}/"
        node_port_addresses: list[str] = []
        for rule in nat:
            chain = prefix + rule.chain
            if rule.target == "DNAT" and rule.to_destination:
                found = _to_destination(rule.to_destination)
                if found is not None:
                    dnat.setdefault(chain, set()).add(found)
            elif rule.target and rule.target.startswith("KUBE-") and not rule.target.startswith("KUBE-MARK-"):
                edges.setdefault(chain, set()).add(prefix + rule.target)
            if rule.chain == "KUBE-SERVICES" and rule.target == "KUBE-NODEPORTS":
                if rule.destination is not None:
                    node_port_addresses.append(rule.destination)
                elif rule.dst_local:
                    node_port_addresses.extend(ip for ip in (canonical_ip(a) for a in local_addresses) if ip)
        node_ips = [ip for ip in node_port_addresses if Family.of(ip) is family]
        for rule in nat:
            if rule.target is None or not rule.target.startswith(_ENTRY_PREFIXES):
                continue
            if rule.protocol is None or rule.dport is None:
                continue
            if rule.chain == "KUBE-SERVICES" and rule.destination is not None:
                entries.add(rule.destination, rule.dport, rule.protocol, prefix + rule.target, "Service")
            elif rule.chain == "KUBE-NODEPORTS" and rule.destination is None:
                for ip in node_ips:
                    entries.add(ip, rule.dport, rule.protocol, prefix + rule.target, "NodePort")
        for rule in tables.get("filter", []):
            if rule.target not in ("REJECT", "DROP") or rule.protocol is None or rule.dport is None:
                continue
            if rule.chain in ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES") and rule.destination is not None:
                entries.add(rule.destination, rule.dport, rule.protocol, None, "Service")
            elif rule.chain in ("KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS") and rule.dst_local:
                for ip in node_ips:
                    entries.add(ip, rule.dport, rule.protocol, None, "NodePort")
    return _result(node, "iptables", entries, lambda chain: _walk(chain, edges, dnat))
