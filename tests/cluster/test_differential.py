"""Where kube-proxy is the oracle, ProxyMedic agrees with it: the expectation matrix on a real kube-proxy.

Every Service shape of the expectation matrix (``tests/expectation``: dual-stack, three zones,
local and remote endpoints, terminating fallbacks, traffic policies, topology, NodePorts,
externalIPs, load-balancer ingress, named ports) is applied to the real API server at once. A
real kube-proxy (IPVS) then runs for each of the matrix's three nodes, each in a network
namespace of its own that carries that node's InternalIPs, so each programs its own IPVS table
as it would on that node. What each programmed, read from the kernel with ``ipvsadm -S -n``,
must equal what ``proxymedic expect NODE`` says, reading the same cluster.

The same cases run in milliseconds as unit tests of the expectation (tests/expectation); this
is where those rules meet kube-proxy's own.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from proxymedic.expectation import parse_ipvsadm
from tests.cluster import netlab
from tests.cluster.kubeproxy import Relay, relayed_kubeconfig, setup_rbac, stop_process
from tests.cluster.scenarios import report_dir
from tests.expectation.manifests import NODE_IPV4, NODE_IPV6, NODE_NAMES
from tests.realk8s import binaries, matrix
from tests.realk8s.controlplane import ControlPlane

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1500)]

PREFIX = "pm-kp-"
CLUSTER_CIDRS = "10.244.0.0/16,fd00:10:244::/56"
PROGRAM_TIMEOUT = 900.0
"""Three kube-proxies start and sync the whole matrix on the VM's emulated CPUs."""
RESTART_AFTER = PROGRAM_TIMEOUT / 2
"""A kube-proxy that has not programmed the matrix by then is restarted, once. Under emulation one
of three once never initialized its IPv6 proxier (its log repeated "Not syncing ipvs rules until
Services and Endpoints have been received from master" for 15 minutes) and never saw its Node's
zone label, while the other two agreed within 76 s: a start-up race of kube-proxy's, not a
difference from the expectation, which is what this test is about. The restart is reported."""


@dataclass
class MatrixNode:
    name: str
    ns: str
    proc: subprocess.Popen[bytes]
    restart: Callable[[], subprocess.Popen[bytes]]
    """Start this node's kube-proxy again, with the same arguments."""

    def kernel(self) -> dict[str, Any]:
        """The node's IPVS table as ``proxymedic expect`` shapes it (real servers at weight 0,
        draining, left out as the expectation leaves them out)."""
        saved = netlab.run("ip", "netns", "exec", self.ns, "ipvsadm", "-S", "-n")
        return parse_ipvsadm(saved, self.name).as_json()


def _namespace(index: int, node: str) -> str:
    """The node's network namespace: one veth to the VM's root namespace, the node's InternalIPs."""
    ns = f"{PREFIX}{index}"
    netlab.attach(ns, f"pmv-kp{index}", NODE_IPV4[node])
    # nodad: kube-proxy reads the node's addresses for NodePorts as it syncs, tentative or not.
    netlab.ip_batch([f"addr add {NODE_IPV6[node]}/128 dev eth0 nodad"], ns)
    return ns


def _start(
    plane: ControlPlane, relay: Relay, binary: Path, work: Path, out: Path, ns: str, node: str
) -> MatrixNode:
    kubeconfig = relayed_kubeconfig(plane, relay, netlab.GATEWAY, work / f"{node}.kubeconfig")
    argv = [
        "ip",
        "netns",
        "exec",
        ns,
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--hostname-override={node}",
    ]
    argv += ["--proxy-mode=ipvs", "--ipvs-scheduler=rr", f"--cluster-cidr={CLUSTER_CIDRS}"]
    # The conntrack table is the VM's, shared by every namespace.
    argv += ["--conntrack-max-per-core=0", "--v=2"]

    def start() -> subprocess.Popen[bytes]:
        with (out / f"kube-proxy-{node}.log").open("ab") as log:
            return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    return MatrixNode(node, ns, start(), start)


@pytest.fixture(scope="module")
def matrix_nodes(plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[MatrixNode]]:
    found = binaries.find(need_proxy=True)
    assert found.kube_proxy is not None
    work = tmp_path_factory.mktemp("matrix")
    out = report_dir()
    netlab.cleanup_namespaces(PREFIX)
    netlab.sysctl("net.ipv4.ip_forward", 1)
    netlab.run("ip", "link", "set", "lo", "up")
    setup_rbac(plane)
    matrix.apply(plane)
    nodes: list[MatrixNode] = []
    relay: Relay | None = None
    try:
        namespaces = {name: _namespace(index, name) for index, name in enumerate(NODE_NAMES)}
        # The relay listens on the root side of the veths, which carries the gateway address.
        api = urllib.parse.urlsplit(plane.server)
        relay = Relay((api.hostname or "127.0.0.1", api.port or 443), listen=netlab.GATEWAY)
        for name, ns in namespaces.items():
            nodes.append(_start(plane, relay, found.kube_proxy, work, out, ns, name))
        yield nodes
    finally:
        for node in nodes:
            stop_process(node.proc)
        if relay is not None:
            relay.close()
        netlab.cleanup_namespaces(PREFIX)
        matrix.remove(plane)


def test_kube_proxy_programs_what_proxymedic_expects(
    plane: ControlPlane, matrix_nodes: list[MatrixNode]
) -> None:
    expected = {node.name: matrix.expect_json(plane, node.name) for node in matrix_nodes}
    # Local traffic policies and topology make each node's table its own: a matrix that gave
    # every node the same table would not test the per-node rules.
    assert len({json.dumps(e, sort_keys=True) for e in expected.values()}) == len(matrix_nodes)
    started = time.monotonic()
    programmed: dict[str, float] = {}
    latest: dict[str, dict[str, Any]] = {}

    restarted: dict[str, float] = {}
    deadline = started + PROGRAM_TIMEOUT
    while len(programmed) < len(matrix_nodes) and time.monotonic() < deadline:
        for node in matrix_nodes:
            assert node.proc.poll() is None, f"kube-proxy for {node.name} exited ({node.proc.returncode})"
            if node.name not in programmed:
                latest[node.name] = node.kernel()
                if latest[node.name] == expected[node.name]:
                    programmed[node.name] = time.monotonic() - started
                elif node.name not in restarted and time.monotonic() - started > RESTART_AFTER:
                    restarted[node.name] = round(time.monotonic() - started, 1)
                    stop_process(node.proc)
                    node.proc = node.restart()
        time.sleep(5)
    summary = {
        node.name: {
            "virtualServers": len(expected[node.name]["virtualServers"]),
            "realServers": sum(len(vs["realServers"]) for vs in expected[node.name]["virtualServers"]),
            "agreedAfterSeconds": round(programmed[node.name], 1) if node.name in programmed else None,
            "restartedAfterSeconds": restarted.get(node.name),
        }
        for node in matrix_nodes
    }
    (report_dir() / "differential.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"differential: {json.dumps(summary)}")
    for node in matrix_nodes:
        assert latest[node.name] == expected[node.name], (
            f"{node.name}: the kernel differs from `proxymedic expect`"
        )
