"""Reading kube-proxy's nftables and iptables rules into the per-node view ``proxymedic expect`` gives.

The fixtures are a real kube-proxy v1.36.1's rules (nftables mode, then iptables mode with the
nf_tables backend) for one node with ``kube-dns`` (two ready endpoints and a terminating one,
which kube-proxy leaves out while ready ones exist) and the API server's ``kubernetes`` Service.
The whole expectation matrix is compared with the real kube-proxy in
``tests/realapi/test_rules_differential.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from proxymedic.expectation import (
    ProxyOptions,
    RulesParseError,
    expect_from_objects,
    parse_iptables_save,
    parse_nftables_json,
)

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parent / "fixtures"
KUBE_DNS = [{"address": "10.244.1.10", "port": 53}, {"address": "10.244.1.11", "port": 53}]


def _view(found: Any) -> dict[tuple[str, int, str], list[str]]:
    return {
        (vs.address, vs.port, vs.protocol): [f"{rs.address}:{rs.port}" for rs in vs.real_servers]
        for vs in found.virtual_servers
    }


def test_nftables_of_a_real_kube_proxy() -> None:
    document = json.loads((FIXTURES / "kube-proxy-1.36-nftables.json").read_text())
    found = parse_nftables_json(document, "node-1").as_json()
    assert found["mode"] == "nftables"
    by_key = {
        (vs["address"], vs["port"], vs["protocol"]): vs["realServers"] for vs in found["virtualServers"]
    }
    assert by_key[("10.96.0.10", 53, "UDP")] == KUBE_DNS
    assert by_key[("10.96.0.10", 53, "TCP")] == KUBE_DNS
    assert by_key[("10.96.0.1", 443, "TCP")] == [{"address": "10.250.0.1", "port": 54631}]
    assert len(by_key) == 3


def test_iptables_save_of_a_real_kube_proxy() -> None:
    text = (FIXTURES / "kube-proxy-1.36-iptables-save.txt").read_text()
    found = parse_iptables_save(text, "", "node-1").as_json()
    assert found["mode"] == "iptables"
    by_key = {
        (vs["address"], vs["port"], vs["protocol"]): vs["realServers"] for vs in found["virtualServers"]
    }
    assert by_key[("10.96.0.10", 53, "UDP")] == KUBE_DNS
    assert by_key[("10.96.0.10", 53, "TCP")] == KUBE_DNS
    assert by_key[("10.96.0.1", 443, "TCP")] == [{"address": "10.250.0.1", "port": 38563}]
    assert len(by_key) == 3


def _elem_map(name: str, *pairs: list[Any]) -> dict[str, Any]:
    return {"map": {"name": name, "elem": list(pairs)}}


def _rule(chain: str, *expr: dict[str, Any]) -> dict[str, Any]:
    return {"rule": {"chain": chain, "expr": list(expr)}}


def _wrap(family: str, *objects: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {kind: {**body, "family": family, "table": "kube-proxy"}}
        for obj in objects
        for kind, body in obj.items()
    ]


def test_nftables_per_endpoint_chains_and_wrapped_elements() -> None:
    """The layout before kube-proxy 1.33: a verdict map to one chain per endpoint, each with its DNAT;
    elements carrying a comment are wrapped in ``elem``; an IPv6 NodePort on the nodeport-ips set."""
    goto = {"goto": {"target": "service-X-ns/dns/udp/dns"}}
    objects = _wrap(
        "ip6",
        {"set": {"name": "nodeport-ips", "elem": ["fd00::3"]}},
        _elem_map(
            "service-ips", [{"elem": {"val": {"concat": ["fd00:10:96::a", "udp", 53]}, "comment": "x"}}, goto]
        ),
        _elem_map("service-nodeports", [{"concat": ["udp", 30053]}, goto]),
        _elem_map(
            "no-endpoint-services",
            [{"concat": ["fd00:10:96::b", "tcp", 80]}, {"goto": {"target": "reject-chain"}}],
        ),
        _rule(
            "service-X-ns/dns/udp/dns",
            {
                "vmap": {
                    "key": {"numgen": {"mode": "random", "mod": 2}},
                    "data": {
                        "set": [
                            [0, {"goto": {"target": "endpoint-A"}}],
                            [1, {"goto": {"target": "endpoint-B"}}],
                        ]
                    },
                }
            },
        ),
        _rule("endpoint-A", {"dnat": {"family": "ip6", "addr": "fd00:10:244::5", "port": 53}}),
        _rule("endpoint-B", {"dnat": {"family": "ip6", "addr": "fd00:10:244::6", "port": 53}}),
    )
    found = _view(parse_nftables_json({"nftables": objects}))
    assert found == {
        ("fd00::3", 30053, "UDP"): ["fd00:10:244::5:53", "fd00:10:244::6:53"],
        ("fd00:10:96::a", 53, "UDP"): ["fd00:10:244::5:53", "fd00:10:244::6:53"],
        ("fd00:10:96::b", 80, "TCP"): [],
    }


def test_nftables_node_ports_on_every_local_address() -> None:
    """Without a nodeport-ips set (``--nodeport-addresses`` unset) NodePorts take the given addresses."""
    goto = {"goto": {"target": "svc"}}
    objects = _wrap(
        "ip",
        _elem_map("service-ips", [{"concat": ["10.96.0.20", "udp", 53]}, goto]),
        _elem_map("service-nodeports", [{"concat": ["udp", 30053]}, goto]),
        _rule("svc", {"dnat": {"family": "ip", "addr": "10.244.1.5", "port": 53}}),
    )
    found = _view(parse_nftables_json({"nftables": objects}, local_addresses=["172.18.0.3", "fd00::3"]))
    assert found[("172.18.0.3", 30053, "UDP")] == ["10.244.1.5:53"]
    assert ("fd00::3", 30053, "UDP") not in found  # an IPv6 address is not the ip table's


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"nftables": "x"},
        {"nftables": _wrap("ip", _elem_map("service-ips", [{"concat": ["not-an-ip", "udp", 53]}, {}]))},
        {"nftables": _wrap("ip", _elem_map("service-nodeports", [{"concat": ["udp"]}, {}]))},
    ],
)
def test_nftables_in_an_unknown_shape_is_an_error(document: dict[str, Any]) -> None:
    with pytest.raises(RulesParseError):
        parse_nftables_json(document)


def test_other_tables_and_no_kube_proxy_are_no_services() -> None:
    other = [
        {"table": {"family": "inet", "name": "filter"}},
        {"rule": {"family": "inet", "table": "filter", "chain": "x", "expr": []}},
    ]
    assert parse_nftables_json({"nftables": other}).virtual_servers == ()
    assert parse_iptables_save("", "").virtual_servers == ()


IPV6_SAVE = "\n".join(
    [
        "*nat",
        ":KUBE-SERVICES - [0:0]",
        (
            "-A KUBE-SERVICES -d fd00:10:96::a/128 -p udp -m comment --co"
            'mment "ns/dns:dns cluster IP" -m udp --dport 53 -j KUBE-SVC-A'
        ),
        ('-A KUBE-SERVICES -m comment --comment "nodeports" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS'),
        '-A KUBE-NODEPORTS -p udp -m comment --comment "ns/dns:dns" -m udp --dport 30053 -j KUBE-EXT-A',
        (
            '-A KUBE-EXT-A -m comment --comment "masquerade traffic '
            'for ns/dns:dns external destinations" -j KUBE-MARK-MASQ'
        ),
        "-A KUBE-EXT-A -j KUBE-SVC-A",
        (
            "-A KUBE-SVC-A ! -s fd00:10:244::/56 -d fd00:10:96"
            "::a/128 -p udp -m udp --dport 53 -j KUBE-MARK-MASQ"
        ),
        '-A KUBE-SVC-A -m comment --comment "ns/dns:dns -> [fd00:10:244::5]:53" -j KUBE-SEP-B',
        "-A KUBE-SEP-B -s fd00:10:244::5/128 -j KUBE-MARK-MASQ",
        "-A KUBE-SEP-B -p udp -m udp -j DNAT --to-destination [fd00:10:244::5]:53",
        "COMMIT",
        "*filter",
        ":KUBE-SERVICES - [0:0]",
        ":KUBE-EXTERNAL-SERVICES - [0:0]",
        (
            '-A KUBE-SERVICES -d fd00:10:96::b/128 -p tcp -m comment --comment "ns/web:http h'
            'as no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp6-port-unreachable'
        ),
        (
            '-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "ns/web:http has no endpoints" -m ad'
            "drtype --dst-type LOCAL -m tcp --dport 30080 -j REJECT --reject-with icmp6-port-unreachable"
        ),
        "COMMIT",
        "",
    ]
)


def test_iptables_ipv6_node_ports_on_local_addresses_and_rejects() -> None:
    found = _view(parse_iptables_save("", IPV6_SAVE, local_addresses=["172.18.0.3", "fd00::3"]))
    assert found == {
        ("fd00::3", 30053, "UDP"): ["fd00:10:244::5:53"],
        ("fd00::3", 30080, "TCP"): [],
        ("fd00:10:96::a", 53, "UDP"): ["fd00:10:244::5:53"],
        ("fd00:10:96::b", 80, "TCP"): [],
    }


def test_an_unbalanced_quote_in_iptables_save_is_an_error() -> None:
    with pytest.raises(RulesParseError):
        parse_iptables_save('*nat\n-A KUBE-SERVICES -m comment --comment "open\nCOMMIT\n')


def _service(policy: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "kind": "Node",
            "metadata": {"name": "n1"},
            "status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.3"}]},
        },
        {
            "kind": "Service",
            "metadata": {"name": "dns", "namespace": "ns"},
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.96.0.20",
                "clusterIPs": ["10.96.0.20"],
                "ports": [{"name": "dns", "protocol": "UDP", "port": 53, "nodePort": 30053}],
                **policy,
            },
        },
        {
            "kind": "EndpointSlice",
            "metadata": {"name": "dns-1", "namespace": "ns", "labels": {"kubernetes.io/service-name": "dns"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.2.5"], "conditions": {"ready": True}, "nodeName": "n2"}],
            "ports": [{"name": "dns", "protocol": "UDP", "port": 53}],
        },
    ]


@pytest.mark.parametrize("mode", ["nftables", "iptables"])
def test_rule_modes_drop_where_ipvs_falls_back(mode: str) -> None:
    """internalTrafficPolicy Local with no local endpoint: IPVS programs every endpoint, the rule
    modes none (the traffic is dropped). externalTrafficPolicy Local with none: the node's own
    traffic still reaches every endpoint through the cluster-wide chain."""
    items = _service({"internalTrafficPolicy": "Local", "externalTrafficPolicy": "Local"})
    ipvs = _view(expect_from_objects(items, "n1"))
    rules = _view(expect_from_objects(items, "n1", ProxyOptions(mode=mode)))
    assert ipvs[("10.96.0.20", 53, "UDP")] == ["10.244.2.5:53"]
    assert rules[("10.96.0.20", 53, "UDP")] == []
    assert rules[("172.18.0.3", 30053, "UDP")] == ["10.244.2.5:53"]
    assert expect_from_objects(items, "n1", ProxyOptions(mode=mode)).mode == mode
