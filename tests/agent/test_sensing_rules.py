"""Sensing a node without IPVS: kube-proxy's rules reported as virtual servers, conntrack by endpoint.

The rules are a real kube-proxy 1.36's (the fixtures of ``tests/expectation``); the conntrack
table is faked per address. What cannot be read is a problem in the report, never a crash and
never an empty table that would read as "kube-proxy programmed nothing".
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from proxymedic.agent.node import NodeDataplane
from proxymedic.agent.sensing import LocalFindings, SenseSettings, sense
from proxymedic.api.health import MAX_VIRTUAL_SERVERS, ProxyMode
from proxymedic.dataplane.kubeproxy import KubeProxyObservation
from proxymedic.dataplane.kubeproxy import ProxyMode as ProbedMode
from proxymedic.dataplane.types import (
    ConntrackStats,
    DataplaneError,
    DataplanePermissionError,
    Endpoint,
    IPAddress,
    L4Protocol,
    ServiceKey,
)
from proxymedic.expectation import (
    NodeExpectation,
    RealServer,
    RulesParseError,
    VirtualServer,
    parse_iptables_save,
    parse_nftables_json,
)

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parents[1] / "expectation" / "fixtures"
DNS_VIP = ipaddress.ip_address("10.96.0.10")
GONE = Endpoint(ipaddress.ip_address("10.244.2.99"), 53)
SERVING = Endpoint(ipaddress.ip_address("10.244.1.10"), 53)


def nftables_rules(mode: ProxyMode) -> NodeExpectation:
    assert mode is ProxyMode.NFTABLES
    return parse_nftables_json(json.loads((FIXTURES / "kube-proxy-1.36-nftables.json").read_text()), "n1")


def iptables_rules(mode: ProxyMode) -> NodeExpectation:
    assert mode is ProxyMode.IPTABLES
    return parse_iptables_save((FIXTURES / "kube-proxy-1.36-iptables-save.txt").read_text(), "", "n1")


class Conntrack:
    def __init__(
        self, answered: dict[tuple[IPAddress, int], dict[Endpoint, int]], fail: bool = False
    ) -> None:
        self.answered = answered
        self.fail = fail
        self.asked: list[tuple[IPAddress, int]] = []

    def stats(self) -> ConntrackStats:
        return ConntrackStats(count=10, max=1000)

    def delete_udp_entries(self, vip: IPAddress, port: int, backend: IPAddress) -> int:
        raise AssertionError("sensing never deletes")

    def reply_sources(self, vip: IPAddress, port: int) -> dict[Endpoint, int]:
        if self.fail:
            raise DataplanePermissionError("ctnetlink: operation not permitted")
        self.asked.append((vip, port))
        return self.answered.get((vip, port), {})


class NoSysctls:
    def read(self, name: str) -> int:
        raise DataplaneError(f"{name}: absent")

    def write(self, name: str, value: int) -> None:
        raise AssertionError("sensing never writes")


def dataplane(mode: ProxyMode, rules: object, conntrack: Conntrack | None) -> NodeDataplane:
    async def probe() -> KubeProxyObservation:
        return KubeProxyObservation(observed_at=1_790_000_000.0, mode=ProbedMode(str(mode)))

    return NodeDataplane(
        ipvs=None,
        connections=None,
        conntrack=conntrack,
        sysctls=NoSysctls(),
        probe=probe,
        clock=lambda: 1_790_000_000.0,
        rules=rules,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("mode", "rules"), [(ProxyMode.NFTABLES, nftables_rules), (ProxyMode.IPTABLES, iptables_rules)]
)
async def test_the_rules_udp_services_are_reported_with_their_conntrack_entries(
    mode: ProxyMode, rules: object
) -> None:
    conntrack = Conntrack({(DNS_VIP, 53): {SERVING: 4, GONE: 3}})
    report = await sense(dataplane(mode, rules, conntrack), SenseSettings(), LocalFindings(), "t")
    assert report.proxy_mode is mode
    assert report.problems == []
    assert report.ipvs is None
    [dns] = report.virtual_servers  # the fixtures' only UDP Service; TCP ones are not sensed
    assert (dns.vip, dns.port, str(dns.protocol)) == ("10.96.0.10", 53, "UDP")
    assert [(rs.ip, rs.port, rs.weight, rs.connections) for rs in dns.real_servers] == [
        ("10.244.1.10", 53, 1, 4),
        ("10.244.1.11", 53, 1, 0),
    ]
    assert [(o.ip, o.port, o.connections) for o in dns.orphaned_connections] == [("10.244.2.99", 53, 3)]
    assert conntrack.asked == [(DNS_VIP, 53)]


async def test_a_scope_narrows_the_rules_and_the_conntrack_reads() -> None:
    conntrack = Conntrack({})
    elsewhere = ServiceKey(L4Protocol.UDP, ipaddress.ip_address("10.96.9.9"), 53)
    settings = SenseSettings(virtual_servers=frozenset({elsewhere}))
    report = await sense(
        dataplane(ProxyMode.NFTABLES, nftables_rules, conntrack), settings, LocalFindings(), "t"
    )
    assert report.virtual_servers == []
    assert conntrack.asked == []


def malformed(mode: ProxyMode) -> NodeExpectation:
    raise RulesParseError("service-ips element 3: not an address: 'x'")


def unreadable(mode: ProxyMode) -> NodeExpectation:
    raise DataplanePermissionError("iptables-save: Permission denied (you must be root)")


@pytest.mark.parametrize(
    ("rules", "problem"),
    [
        (malformed, "kube-proxy's nftables rules: RulesParseError: service-ips element 3: not an address"),
        (unreadable, "kube-proxy's nftables rules: iptables-save: Permission denied"),
    ],
)
async def test_rules_that_cannot_be_read_are_a_problem_and_no_virtual_servers(
    rules: object, problem: str
) -> None:
    report = await sense(
        dataplane(ProxyMode.NFTABLES, rules, Conntrack({})), SenseSettings(), LocalFindings(), "t"
    )
    assert report.virtual_servers == []
    assert len(report.problems) == 1
    assert report.problems[0].startswith(problem)


async def test_conntrack_that_cannot_be_read_leaves_the_rules_reported() -> None:
    conntrack = Conntrack({}, fail=True)
    report = await sense(
        dataplane(ProxyMode.NFTABLES, nftables_rules, conntrack), SenseSettings(), LocalFindings(), "t"
    )
    [dns] = report.virtual_servers
    assert [rs.ip for rs in dns.real_servers] == ["10.244.1.10", "10.244.1.11"]
    assert dns.orphaned_connections == []
    assert report.problems == ["conntrack entries by endpoint: ctnetlink: operation not permitted"]


async def test_a_rule_mode_node_without_a_rules_reader_reports_nothing_it_did_not_read() -> None:
    report = await sense(
        dataplane(ProxyMode.IPTABLES, None, Conntrack({})), SenseSettings(), LocalFindings(), "t"
    )
    assert report.virtual_servers == []
    assert report.proxy_mode is ProxyMode.IPTABLES


async def test_more_udp_services_than_a_report_holds_are_truncated_and_said_so() -> None:
    many = tuple(
        VirtualServer(f"10.96.{i // 250}.{i % 250 + 1}", 53, "UDP", (RealServer("10.244.1.10", 53),))
        for i in range(MAX_VIRTUAL_SERVERS + 1)
    )

    def rules(mode: ProxyMode) -> NodeExpectation:
        return NodeExpectation("n1", many, str(mode))

    conntrack = Conntrack({})
    report = await sense(
        dataplane(ProxyMode.NFTABLES, rules, conntrack), SenseSettings(), LocalFindings(), "t"
    )
    assert len(report.virtual_servers) == MAX_VIRTUAL_SERVERS
    assert report.virtual_servers_truncated
    assert len(conntrack.asked) == MAX_VIRTUAL_SERVERS, "no conntrack read for what is not reported"
