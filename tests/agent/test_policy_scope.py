"""The operator lists each policy's virtual servers for agents; agents look up exactly the union."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from proxymedic.agent.scope import node_internal_ips, policy_scope, sensing_keys
from proxymedic.api.health import MAX_VIRTUAL_SERVERS
from proxymedic.api.policy import MAX_SENSED_VIRTUAL_SERVERS, SensingScope
from proxymedic.dataplane.types import L4Protocol, ServiceKey
from proxymedic.expectation.model import ServicePortSpec, ServiceSpec
from proxymedic.operator.sensing_scope import sensing_scope

pytestmark = pytest.mark.unit


def service(
    name: str,
    cluster_ips: tuple[str, ...],
    ports: tuple[ServicePortSpec, ...],
    external: tuple[str, ...] = (),
    lb: tuple[str, ...] = (),
) -> ServiceSpec:
    return ServiceSpec("ns", name, cluster_ips, ports, external, lb, False, False)


DNS = service(
    "dns",
    ("10.96.0.10", "fd00::a"),
    (ServicePortSpec("dns", "UDP", 53, 0), ServicePortSpec("dns-tcp", "TCP", 53, 0)),
)
EDGE = service(
    "edge",
    ("10.96.7.7",),
    (ServicePortSpec("q", "UDP", 8053, 30053),),
    external=("192.0.2.9",),
    lb=("198.51.100.4",),
)


def udp(address: str, port: int) -> ServiceKey:
    return ServiceKey(L4Protocol.UDP, ipaddress.ip_address(address), port)


def test_the_operator_lists_every_address_and_node_port_of_the_selected_protocols() -> None:
    scope = sensing_scope([EDGE, DNS, DNS], {"UDP"})
    assert [(vs.address, vs.port, str(vs.protocol)) for vs in scope.virtual_servers] == [
        ("10.96.0.10", 53, "UDP"),
        ("10.96.7.7", 8053, "UDP"),
        ("192.0.2.9", 8053, "UDP"),
        ("198.51.100.4", 8053, "UDP"),
        ("fd00::a", 53, "UDP"),
    ]
    assert [(np.port, str(np.protocol)) for np in scope.node_ports] == [(30053, "UDP")]
    assert scope.complete
    assert len(sensing_scope([DNS], {"UDP", "TCP"}).virtual_servers) == 4


def test_too_many_virtual_servers_make_the_list_incomplete() -> None:
    many = [
        service(f"s{i}", (str(ipaddress.ip_address("10.96.0.1") + i),), (ServicePortSpec("p", "UDP", 53, 0),))
        for i in range(MAX_SENSED_VIRTUAL_SERVERS + 1)
    ]
    scope = sensing_scope(many, {"UDP"})
    assert not scope.complete
    assert scope.virtual_servers == []
    assert sensing_keys([scope], ()) is None


def test_the_agent_looks_up_the_union_with_node_ports_on_its_internal_ips() -> None:
    node: dict[str, Any] = {
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": "172.18.0.2"},
                {"type": "Hostname", "address": "node-1"},
                {"type": "InternalIP", "address": "not an address"},
            ]
        }
    }
    addresses = node_internal_ips(node)
    assert addresses == ("172.18.0.2",)
    keys = sensing_keys([sensing_scope([DNS], {"UDP", "TCP"}), sensing_scope([EDGE], {"UDP"})], addresses)
    assert keys == frozenset(
        {
            udp("10.96.0.10", 53),
            udp("fd00::a", 53),
            udp("10.96.7.7", 8053),
            udp("192.0.2.9", 8053),
            udp("198.51.100.4", 8053),
            udp("172.18.0.2", 30053),
        }
    ), "TCP entries are left out: reports carry UDP virtual servers only"


def test_no_policy_means_nothing_to_look_up() -> None:
    assert sensing_keys([], ("172.18.0.2",)) == frozenset()


@pytest.mark.parametrize(
    "status",
    [
        {},
        {"status": {}},
        {"status": {"conditions": []}},
        {"status": {"sensing": "everything"}},
        {
            "status": {
                "sensing": {"virtualServers": [{"address": "not an IP", "port": 53, "protocol": "UDP"}]}
            }
        },
        {"status": {"sensing": {"virtualServers": [], "complete": "yes"}}},
    ],
    ids=["no-status", "empty-status", "no-sensing", "not-an-object", "bad-address", "bad-complete"],
)
def test_a_policy_without_a_readable_list_makes_the_agent_dump_its_table(status: dict[str, Any]) -> None:
    parsed = policy_scope(status)
    assert parsed is None
    assert sensing_keys([SensingScope(), parsed], ()) is None


def test_a_union_larger_than_a_report_is_dumped_instead() -> None:
    scopes = [
        sensing_scope(
            [
                service(
                    f"s{p}-{i}",
                    (str(ipaddress.ip_address("10.96.0.1") + 1000 * p + i),),
                    (ServicePortSpec("p", "UDP", 53, 0),),
                )
                for i in range(MAX_VIRTUAL_SERVERS // 2 + 1)
            ],
            {"UDP"},
        )
        for p in range(2)
    ]
    assert all(scope.complete for scope in scopes)
    assert sensing_keys(scopes, ()) is None
