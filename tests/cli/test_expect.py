"""``proxymedic expect NODE`` reading the cluster through the kubeconfig (the emulator)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli import cluster
from tests.cli.conftest import Run

pytestmark = pytest.mark.emulator


def test_reads_services_slices_and_nodes_from_the_cluster(run: Run, populated: Path) -> None:
    result = run("expect", "node-1", "-o", "json", kubeconfig=populated)
    assert result.code == 0, result.err
    backends = [{"address": ip, "port": 53} for ip in sorted(cluster.LIVE)]
    assert json.loads(result.out) == {
        "node": "node-1",
        "mode": "ipvs",
        "virtualServers": [
            {"address": cluster.VIP, "port": 53, "protocol": protocol, "realServers": backends}
            for protocol in ("TCP", "UDP")
        ],
    }


def test_an_empty_cluster_has_no_virtual_servers(run: Run, empty_api: tuple[object, Path]) -> None:
    result = run("expect", "node-1", kubeconfig=empty_api[1])
    assert result.code == 0, result.err
    assert result.out == "node node-1, kube-proxy mode ipvs\nno virtual servers\n"


def test_an_unreachable_cluster_is_exit_3(run: Run, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {}}]\n"
    )
    result = run("expect", "node-1", kubeconfig=config)
    assert result.code == 3
    assert "cannot reach the API server at http://127.0.0.1:9" in result.err
