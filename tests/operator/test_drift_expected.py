"""Drift judges a node against what kube-proxy should have programmed there, not one live set per Service.

Each case of the expectation matrix, reported by a node exactly as kube-proxy programs it, has no
findings: the false findings of a per-Service live set (families mixed, traffic policies and
topology ignored, a local terminating pod called stale, publishNotReadyAddresses backends called
dead, another proxy's Services judged, draining TCP real servers called stale) are gone, and the
NodePort, externalIP and load-balancer virtual servers are judged too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from proxymedic.api.health import FindingType, NodeProxyHealthStatus
from proxymedic.operator.drift import detect
from proxymedic.operator.state import Cluster
from proxymedic.runbook.diagnose import step_real_servers
from proxymedic.runbook.report import Verdict
from tests.expectation.cases import CASES, Case
from tests.expectation.manifests import NAMESPACE, NODE_IPV4, NODE_NAMES, NODES, W1, W3, VirtualServerRow
from tests.unit.factories import policy

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
POLICY = policy(services={"namespaces": [NAMESPACE], "protocols": ["UDP", "TCP"]})
BY_NAME = {case.name: case for case in CASES}


def cluster_of(case: Case) -> Cluster:
    cluster = Cluster()
    cluster.set_policy("coredns", POLICY)
    for manifest in [*case.manifests, *NODES]:
        if manifest["kind"] == "Service":
            cluster.set_service(manifest, deleted=False)
        elif manifest["kind"] == "EndpointSlice":
            cluster.set_slice(manifest, deleted=False)
        else:
            cluster.set_node(manifest, deleted=False)
    return cluster


def _real_server(text: str, weight: int = 1) -> dict[str, Any]:
    address, _, port = text.rpartition(":")
    return {"ip": address.strip("[]"), "port": int(port), "weight": weight}


def report(rows: list[VirtualServerRow], extra: list[dict[str, Any]] | None = None) -> NodeProxyHealthStatus:
    """A node whose kube-proxy programmed exactly ``rows`` (UDP and TCP alike: the report is one shape)."""
    servers = [
        {"vip": address, "port": port, "protocol": protocol, "realServers": [_real_server(rs) for rs in rss]}
        for address, port, protocol, rss in rows
    ]
    return NodeProxyHealthStatus.model_validate(
        {
            "observedAt": T0.isoformat(),
            "kubeProxy": {"freshness": "Fresh"},
            "virtualServers": servers + (extra or []),
        }
    )


def findings(case: Case, node: str, status: NodeProxyHealthStatus) -> list[tuple[FindingType, str | None]]:
    cluster = cluster_of(case)
    entry = cluster.policies["coredns"]
    assert entry.policy is not None, entry.errors
    return [(f.type, f.backend) for f in detect(node, status, cluster.selected_vips(entry.policy))]


@pytest.mark.parametrize("node", NODE_NAMES)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_a_node_as_kube_proxy_programs_it_has_no_findings(case: Case, node: str) -> None:
    assert findings(case, node, report(case.expected[node])) == []


# The false findings a per-Service live set gave, one matrix case each.
FALSE_FINDINGS = {
    "dual-stack": "MissingRealServer for the other family's backends",
    "internal-traffic-policy-local": "MissingRealServer for other nodes' backends",
    "topology-zone-hints": "MissingRealServer for other zones' backends",
    "topology-node-hints": "MissingRealServer for other nodes' backends",
    "internal-local-terminating-fallback": "StaleRealServer for the node's own terminating pod",
    "publish-not-ready-addresses": "StaleRealServer for a ready terminating backend",
    "multi-port-named": "MissingRealServer on a port no slice lists (kube-proxy ignores targetPort)",
}


@pytest.mark.parametrize(("name", "was"), FALSE_FINDINGS.items())
def test_false_findings_are_gone(name: str, was: str) -> None:
    case = BY_NAME[name]
    for node in NODE_NAMES:
        assert findings(case, node, report(case.expected[node])) == [], was


def test_another_proxys_virtual_server_is_not_judged() -> None:
    case = BY_NAME["service-proxy-name"]
    other = {
        "vip": "10.96.10.25",
        "port": 80,
        "protocol": "TCP",
        "realServers": [_real_server("10.9.9.9:80")],
    }
    assert findings(case, W1, report([], [other])) == []


def test_a_node_port_missing_a_real_server_is_found() -> None:
    case = BY_NAME["nodeport"]
    rows = [row if row[1] != 30080 else (*row[:3], row[3][:1]) for row in case.expected[W1]]
    assert findings(case, W1, report(rows)) == [(FindingType.MISSING_REAL_SERVER, "10.244.3.111")]


def test_a_stale_real_server_on_a_load_balancer_ip_is_found() -> None:
    case = BY_NAME["load-balancer-vip"]
    rows = [
        row if row[0] != "198.51.100.14" else (*row[:3], (*row[3], "10.244.9.9:8080"))
        for row in case.expected[W1]
    ]
    assert findings(case, W1, report(rows)) == [(FindingType.STALE_REAL_SERVER, "10.244.9.9")]


def test_a_proxy_mode_load_balancer_ip_is_not_judged() -> None:
    case = BY_NAME["load-balancer-proxy-mode"]
    lb = {
        "vip": "198.51.100.15",
        "port": 443,
        "protocol": "TCP",
        "realServers": [_real_server("10.9.9.9:8443")],
    }
    assert findings(case, W1, report(case.expected[W1], [lb])) == []


def test_external_policy_local_node_port_is_judged_against_local_endpoints() -> None:
    case = BY_NAME["nodeport-external-policy-local"]
    node_port = ("172.18.0.3", 30081, "TCP", ("10.244.1.121:8080", "10.244.2.121:8080"))
    rows = [row if row[1] != 30081 else node_port for row in case.expected[W1]]
    # 10.244.2.121 is live (elsewhere): never called stale, so nothing to act on here.
    assert findings(case, W1, report(rows)) == []
    assert NODE_IPV4[W1] == node_port[0]


def test_a_draining_tcp_real_server_is_not_stale_but_a_udp_one_is() -> None:
    case = BY_NAME["multi-port-dns"]
    draining = [
        {
            "vip": "10.96.10.1",
            "port": 53,
            "protocol": protocol,
            "realServers": [
                _real_server("10.244.1.11:53"),
                _real_server("10.244.2.11:53"),
                _real_server("10.244.3.99:53", weight=0),
            ],
        }
        for protocol in ("TCP", "UDP")
    ]
    rows = [row for row in case.expected[W3] if row[1] != 53]
    assert findings(case, W3, report(rows, draining)) == [(FindingType.STALE_REAL_SERVER, "10.244.3.99")]


def selection_of(case: Case) -> tuple[Cluster, Any]:
    cluster = cluster_of(case)
    entry = cluster.policies["coredns"]
    assert entry.policy is not None
    return cluster, cluster.selected_vips(entry.policy)


def test_services_that_look_the_same_from_every_node_are_computed_once() -> None:
    _, selection = selection_of(BY_NAME["multi-port-dns"])
    assert selection.on(W1) is selection.on(W3)


def test_node_dependent_answers_are_kept_until_the_node_changes() -> None:
    cluster, selection = selection_of(BY_NAME["topology-zone-hints"])
    first = selection.on(W1)
    assert selection.on(W1) is first
    moved = next(node for node in NODES if node["metadata"]["name"] == W1)
    moved = {**moved, "metadata": {**moved["metadata"], "labels": {"topology.kubernetes.io/zone": "zone-b"}}}
    cluster.set_node(moved, deleted=False)
    again = selection.on(W1)
    assert again is not first
    assert again[("10.96.10.17", 80, "TCP")].expected == {"10.244.2.171", "10.244.2.172"}


@pytest.mark.parametrize("name", ["dual-stack", "internal-traffic-policy-local", "topology-zone-hints"])
def test_diagnose_compares_real_servers_with_what_the_node_should_have(name: str) -> None:
    case = BY_NAME[name]
    _, selection = selection_of(case)
    for node in NODE_NAMES:
        step = step_real_servers(report(case.expected[node]), dict(selection.on(node)))
        assert step.verdict is Verdict.OK, (node, step.summary)
