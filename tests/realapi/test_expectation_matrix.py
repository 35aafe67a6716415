"""The expectation matrix on a real API server: every manifest is accepted as written, and
``proxymedic expect --kubeconfig`` reading the cluster gives what the manifest files give.

The cluster tier (``tests/cluster/test_differential.py``) then compares the same expectation
with what a real kube-proxy programs; this test keeps a manifest the server would reject, or
would change on the way in, from failing there after a VM boot.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from proxymedic.expectation import expect_from_objects
from tests.expectation.manifests import NODE_NAMES, NODES
from tests.realk8s import matrix
from tests.realk8s.controlplane import ControlPlane

pytestmark = pytest.mark.realapi


@pytest.fixture(scope="module")
def applied(real_api: ControlPlane) -> Iterator[ControlPlane]:
    matrix.apply(real_api)
    try:
        yield real_api
    finally:
        matrix.remove(real_api)


def _cluster_addresses(plane: ControlPlane) -> set[str]:
    """The ClusterIPs of the Services the server creates itself (``default/kubernetes``)."""
    status, body = plane.request("GET", "/api/v1/namespaces/default/services")
    assert status == 200, body
    return {ip for item in body["items"] for ip in item["spec"].get("clusterIPs", [])}


@pytest.mark.parametrize("node", NODE_NAMES)
def test_the_cluster_gives_the_expectation_the_files_give(applied: ControlPlane, node: str) -> None:
    from_files = expect_from_objects([*matrix.manifests(), *NODES], node).as_json()
    read_back = expect_from_objects(matrix.read_back(applied), node).as_json()
    assert read_back == from_files
    from_cli = matrix.expect_json(applied, node)
    own = _cluster_addresses(applied)
    from_cli["virtualServers"] = [vs for vs in from_cli["virtualServers"] if vs["address"] not in own]
    assert from_cli == from_files
