"""``proxymedic expect``: manifests in, the expectation out as JSON or text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from proxymedic.cli.main import main
from tests.expectation.cases import CASES
from tests.expectation.manifests import NODES
from tests.expectation.test_matrix import expected_json

pytestmark = pytest.mark.unit

DUAL = next(case for case in CASES if case.name == "dual-stack")
LB = next(case for case in CASES if case.name == "load-balancer-vip")


def test_json_from_multi_document_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifests = tmp_path / "dual.yaml"
    manifests.write_text(yaml.safe_dump_all(DUAL.manifests))
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(yaml.safe_dump_all(NODES))
    assert main(["expect", "kind-worker", "-f", str(manifests), "-f", str(nodes), "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == expected_json("kind-worker", DUAL.expected["kind-worker"])


def test_json_from_a_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    listing = tmp_path / "list.yaml"
    listing.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [*LB.manifests, *NODES]}))
    assert main(["expect", "kind-worker2", "-f", str(listing), "--mode", "ipvs", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == expected_json("kind-worker2", LB.expected["kind-worker2"])


def test_text_names_the_service_and_kind_of_each_virtual_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listing = tmp_path / "lb.yaml"
    listing.write_text(yaml.safe_dump_all([*LB.manifests, *NODES]))
    assert main(["expect", "kind-worker", "-f", str(listing)]) == 0
    assert capsys.readouterr().out == (
        "node kind-worker, kube-proxy mode ipvs\n"
        "TCP  10.96.10.14:80  ClusterIP of expect/web-lb\n"
        "  -> 10.244.3.141:8080\n"
        "TCP  172.18.0.3:30082  NodePort of expect/web-lb\n"
        "  -> 10.244.3.141:8080\n"
        "TCP  198.51.100.14:80  LoadBalancer of expect/web-lb\n"
        "  -> 10.244.3.141:8080\n"
    )


def test_node_addresses_replace_the_internal_ips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    listing = tmp_path / "lb.yaml"
    listing.write_text(yaml.safe_dump_all([*LB.manifests, *NODES]))
    args = ["expect", "kind-worker", "-f", str(listing), "--node-address", "10.0.0.9", "-o", "json"]
    assert main(args) == 0
    addresses = [vs["address"] for vs in json.loads(capsys.readouterr().out)["virtualServers"]]
    assert addresses == ["10.0.0.9", "10.96.10.14", "198.51.100.14"]


def test_an_unreadable_file_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["expect", "kind-worker", "-f", str(tmp_path / "missing.yaml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("proxymedic: error: cannot read")
    assert err.count("\n") == 1


def test_without_a_kubeconfig_exit_4_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none"
    assert main(["expect", "kind-worker", "--kubeconfig", str(missing)]) == 4
    assert capsys.readouterr().err == (
        f"proxymedic: error: kubeconfig {missing} is missing: no such file (--kubeconfig)\n"
    )
