"""The real-control-plane tier in kube-proxy's rule modes: nftables and iptables, on this machine.

These modes need no IPVS, so the node needs no VM: ``node-1`` is a network namespace of this
machine (``pm-node``), with the pods' and the clients' namespaces behind it, as the VM's root
namespace has them in ``tests/cluster``. etcd and kube-apiserver run here (about 10 s to start),
kube-proxy and ProxyMedic's agent run in the node's namespace and reach the API server through
relays on its gateway (kube-proxy's relay is the one a stall blackholes); the operator runs here.
The chart is installed and its tokens used as in the VM tier. Each mode gets a control plane and
a node of its own.

It runs in ``scripts/vm/run-cluster-tests.sh`` after the VM (``PROXYMEDIC_CLUSTER_HOST=1``), so that
``build/test-results/cluster.xml`` holds every mode; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import harness, install, netlab
from tests.cluster.kubeproxy import NODE, KubeProxyDaemon, Relay
from tests.cluster.netlab import wait_for
from tests.cluster.scenarios import Cluster, report_dir
from tests.realk8s import binaries, controlplane

HERE = Path(__file__).parent
NODE_NS = "pm-node"
MODES = ("nftables", "iptables")
HOW = "runs in scripts/vm/run-cluster-tests.sh (kube-proxy's rule modes in network namespaces)"
POLICY: dict[str, Any] = {
    **harness.POLICY,
    "spec": {
        **harness.POLICY["spec"],
        "actions": {
            **harness.POLICY["spec"]["actions"],
            # kube-proxy programs a change here in well under a second; the VM tier's 2m is its
            # emulated CPU's sync time.
            "restartKubeProxy": {"enabled": True, "staleAfter": "30s"},
        },
    },
}


def unavailable_reason() -> str | None:
    if os.environ.get("PROXYMEDIC_CLUSTER_HOST") != "1":
        return HOW
    if os.geteuid() != 0:
        return f"needs root (network namespaces): {HOW}"
    for tool in ("ip", "nft", "iptables-save", "iptables-restore", "openssl"):
        if shutil.which(tool) is None:
            return f"needs {tool}: run scripts/setup.sh --kernel"
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


def programmed_reader(mode: str) -> Any:
    """The backends kube-proxy's rules send the CoreDNS VIP's UDP traffic to, read on the node by
    ``proxymedic programmed`` (ProxyMedic's own reader, which the rules differential checks)."""

    def programmed() -> set[str]:
        argv = ["ip", "netns", "exec", NODE_NS, sys.executable, "-m", "proxymedic.cli.main", "programmed"]
        argv += [NODE, "--mode", mode, "-o", "json"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            return set()  # kube-proxy has not created its tables yet
        for vs in json.loads(done.stdout)["virtualServers"]:
            if (vs["address"], vs["port"], vs["protocol"]) == (netlab.VIP, 53, "UDP"):
                return {rs["address"] for rs in vs["realServers"]}
        return set()

    return programmed


def cleanup() -> None:
    """This tier's namespaces only: the rules differential's (pm-rules-*) are another test's."""
    for prefix in (NODE_NS, netlab.CLIENTS_NS, "pm-coredns-"):
        netlab.cleanup_namespaces(prefix)


def _reported(plane: controlplane.ControlPlane, mode: str) -> bool:
    status, body = plane.request("GET", f"/apis/proxymedic.io/v1alpha1/nodeproxyhealths/{NODE}")
    return status == 200 and body.get("status", {}).get("proxyMode") == mode


@pytest.fixture(scope="module", params=MODES)
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    mode = str(request.param)
    found = binaries.find(need_proxy=True)
    assert found.kube_proxy is not None
    work = Path(tempfile.mkdtemp(prefix=f"proxymedic-cluster-{mode}-"))
    out = report_dir() / mode
    out.mkdir(parents=True, exist_ok=True)
    cleanup()
    relays: list[Relay] = []
    pm: install.ProxyMedic | None = None
    kube_proxy: KubeProxyDaemon | None = None
    cluster: Cluster | None = None
    with controlplane.running(found, workdir=work / "plane", ready_timeout=180) as plane:
        try:
            started = time.monotonic()
            netlab.prepare_node(NODE_NS)
            plane.apply(harness.base_objects())
            status, body = plane.request(
                "PATCH",
                f"/api/v1/nodes/{NODE}/status",
                {"status": {"addresses": [{"type": "InternalIP", "address": netlab.NODE_IP}]}},
                content_type="application/merge-patch+json",
            )
            assert status == 200, body
            api = urllib.parse.urlsplit(plane.server)
            upstream = (api.hostname or "127.0.0.1", api.port or 443)
            relays = [Relay(upstream, listen=netlab.HOST_GATEWAY) for _ in range(2)]
            kube_proxy = KubeProxyDaemon(
                plane,
                found.kube_proxy,
                work,
                out,
                relays[0],
                mode=mode,
                node_ns=NODE_NS,
                relay_address=netlab.HOST_GATEWAY,
            )
            kube_proxy.start()
            install.install_chart(plane)
            pm = install.prepare(plane, work, out, node_ns=NODE_NS, relay=relays[1])
            pm.start()
            wait_for(f"the agent's first report in {mode} mode", lambda: _reported(plane, mode), 300, every=1)
            print(f"cluster ({mode}): ProxyMedic reporting after {time.monotonic() - started:.0f} s")
            cluster = Cluster(
                plane,
                kube_proxy,
                relays[0],
                pm,
                work,
                policy=POLICY,
                node_ns=NODE_NS,
                programmed=programmed_reader(mode),
                table_name=f"cluster-table-{mode}.json",
            )
            yield cluster
        finally:
            # Everything that talks to the API server stops before it does.
            if pm is not None:
                pm.stop()
            if kube_proxy is not None:
                kube_proxy.stop()
            for relay in relays:
                relay.close()
            if cluster is not None and cluster.table:
                cluster.save_table()
    cleanup()
    shutil.rmtree(work, ignore_errors=True)
