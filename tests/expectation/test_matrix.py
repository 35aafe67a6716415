"""The expectation matrix: every case, on every node, gives the rows kube-proxy's rules give."""

from __future__ import annotations

import ipaddress
from typing import Any

import kubernetes_validate
import pytest

from proxymedic.expectation import expect_from_objects
from tests.expectation.cases import CASES, Case
from tests.expectation.manifests import NAMESPACE_MANIFEST, NODE_NAMES, NODES, VirtualServerRow

pytestmark = pytest.mark.unit

KUBERNETES_VERSION = "1.34.0"
"""The first with every field the matrix uses (EndpointSlice hints.forNodes, PreferSameNode)."""


def _address_port(text: str) -> dict[str, Any]:
    address, _, port = text.rpartition(":")
    return {"address": address.strip("[]"), "port": int(port)}


def _ip_key(address: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(address)
    return (ip.version, int(ip))


def expected_json(node: str, rows: list[VirtualServerRow]) -> dict[str, Any]:
    """The rows in the JSON shape, sorted independently of the code under test."""
    servers: list[dict[str, Any]] = [
        {
            "address": address,
            "port": port,
            "protocol": protocol,
            "realServers": sorted(
                (_address_port(rs) for rs in real_servers), key=lambda r: (_ip_key(r["address"]), r["port"])
            ),
        }
        for address, port, protocol, real_servers in rows
    ]
    servers.sort(key=lambda v: (_ip_key(v["address"]), v["port"], v["protocol"]))
    return {"node": node, "mode": "ipvs", "virtualServers": servers}


def test_the_matrix_has_at_least_twenty_service_shapes() -> None:
    assert len(CASES) >= 20
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("node", NODE_NAMES)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_case(case: Case, node: str) -> None:
    result = expect_from_objects([*case.manifests, *NODES], node)
    assert result.as_json() == expected_json(node, case.expected[node]), case.why


@pytest.mark.parametrize("node", NODE_NAMES)
def test_all_cases_in_one_cluster_give_the_union(node: str) -> None:
    """The cases share no address, so a differential run can apply them all at once."""
    manifests = [manifest for case in CASES for manifest in case.manifests]
    rows = [row for case in CASES for row in case.expected[node]]
    assert expect_from_objects([*manifests, *NODES], node).as_json() == expected_json(node, rows)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_the_manifests_are_valid_kubernetes_objects(case: Case) -> None:
    for manifest in [NAMESPACE_MANIFEST, *case.manifests, *NODES]:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_no_case_takes_an_address_a_cluster_allocates_itself() -> None:
    addresses = {row[0] for case in CASES for rows in case.expected.values() for row in rows}
    assert not addresses & {"10.96.0.1", "10.96.0.10", "fd00:10:96::1", "fd00:10:96::a"}


def test_a_node_without_a_node_object_has_no_node_ports_and_no_zone() -> None:
    nodeport = next(case for case in CASES if case.name == "nodeport")
    result = expect_from_objects(nodeport.manifests, "kind-worker")
    assert [vs.kind for vs in result.virtual_servers] == ["ClusterIP"]
