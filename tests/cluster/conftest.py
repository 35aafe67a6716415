"""The real-control-plane tier: etcd, kube-apiserver and kube-proxy (IPVS) on node-1, the VM.

Every test here runs inside the QEMU VM that scripts/vm/run-cluster-tests.sh boots: the VM's
root network namespace is the node, and kube-proxy reprograms its IPVS table and iptables,
which no test may do to the machine running the suite. Elsewhere each test is skipped with
the reason. One control plane, one kube-proxy and one ProxyMedic serve the whole session (the
API server takes minutes to start on an emulated CPU).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import harness, install, netlab
from tests.cluster.kubeproxy import NODE, KubeProxyDaemon, Relay, healthz
from tests.cluster.netlab import wait_for
from tests.cluster.scenarios import Cluster, report_dir
from tests.realk8s import binaries
from tests.realk8s.controlplane import ControlPlane

HERE = Path(__file__).parent
HOW = "runs inside the VM of scripts/vm/run-cluster-tests.sh"


def unavailable_reason() -> str | None:
    if os.environ.get("PROXYMEDIC_CLUSTER_VM") != "1" or not os.environ.get("PROXYMEDIC_CLUSTER_PLANE"):
        return f"{HOW} (kube-proxy reprograms the node's IPVS and iptables)"
    if os.geteuid() != 0 or not Path("/proc/net/ip_vs").exists():
        return f"needs root and the ip_vs module: {HOW}"
    for tool in ("kubectl", "ipset", "iptables", "openssl"):
        if shutil.which(tool) is None:
            return f"needs {tool}: run scripts/vm/setup.sh"
    try:
        binaries.find(need_proxy=True)
    except binaries.Missing as missing:
        return str(missing)
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mine = [it for it in items if Path(str(it.path)).is_relative_to(HERE)]
    for item in mine:
        item.add_marker(pytest.mark.cluster)
    reason = unavailable_reason() if mine else None
    if reason:
        for item in mine:
            item.add_marker(pytest.mark.skip(reason=reason))


def _node_report(plane: ControlPlane) -> Any:
    status, body = plane.request("GET", f"/apis/proxymedic.io/v1alpha1/nodeproxyhealths/{NODE}")
    return status == 200 and body.get("status", {}).get("kubeProxy")


@pytest.fixture(scope="session")
def plane(tmp_path_factory: pytest.TempPathFactory) -> ControlPlane:
    """The API server on the host (tests.realk8s.serve, started by run-cluster-tests.sh): it
    starts there in seconds, where on the VM's emulated CPU it took minutes and then competed
    with kube-proxy and ProxyMedic for the VM's CPUs."""
    plane = ControlPlane.attach(Path(os.environ["PROXYMEDIC_CLUSTER_PLANE"]), tmp_path_factory.mktemp("k8s"))
    print(f"cluster: the API server on the host is {plane.server}")
    return plane


@pytest.fixture(scope="session")
def cluster(plane: ControlPlane) -> Iterator[Cluster]:
    found = binaries.find(need_proxy=True)
    assert found.kube_proxy is not None
    work = Path(tempfile.mkdtemp(prefix="proxymedic-cluster-"))
    out = report_dir()
    netlab.cleanup_namespaces()
    netlab.prepare_node()
    started = time.monotonic()
    plane.apply(harness.base_objects())
    # The node's address, as a kubelet reports it: kube-proxy waits 30 s for one otherwise.
    status, body = plane.request(
        "PATCH",
        f"/api/v1/nodes/{NODE}/status",
        {"status": {"addresses": [{"type": "InternalIP", "address": netlab.NODE_IP}]}},
        content_type="application/merge-patch+json",
    )
    assert status == 200, body
    api = urllib.parse.urlsplit(plane.server)
    relay = Relay((api.hostname or "127.0.0.1", api.port or 443))
    kube_proxy = KubeProxyDaemon(plane, found.kube_proxy, work, out, relay)
    pm: install.ProxyMedic | None = None
    cluster: Cluster | None = None
    try:
        kube_proxy.start()
        install.install_chart(plane)
        pm = install.prepare(plane, work, out)
        pm.start()
        print(f"cluster: chart installed, ProxyMedic started after {time.monotonic() - started:.0f} s")
        wait_for("kube-proxy's healthz to answer 200", lambda: healthz() == 200, 300, every=2)
        # Python processes start slowly on an emulated CPU (minutes for the agent's imports);
        # every poll here is a TLS handshake taken from them, hence the slow pace.
        wait_for("the agent's first NodeProxyHealth report", lambda: _node_report(plane), 1200, every=5)
        print(f"cluster: kube-proxy healthy, the agent reported after {time.monotonic() - started:.0f} s")
        cluster = Cluster(plane, kube_proxy, relay, pm, work)
        yield cluster
    finally:
        if pm is not None:
            pm.stop()
        kube_proxy.stop()
        relay.close()
        if cluster is not None and cluster.table:
            (out / "cluster-table.json").write_text(json.dumps(cluster.table, indent=2) + "\n")
    netlab.cleanup_namespaces()
    shutil.rmtree(work, ignore_errors=True)
