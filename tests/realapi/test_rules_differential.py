"""Where kube-proxy is the oracle in nftables and iptables mode: the expectation matrix on a real
kube-proxy, read back from its rules.

Every Service shape of the expectation matrix (``tests/expectation``: dual-stack, three zones,
local and remote endpoints, terminating fallbacks, traffic policies, topology, NodePorts,
externalIPs, load-balancer ingress, named ports) is applied to the real API server on the host.
A real kube-proxy then runs for each of the matrix's three nodes, in nftables mode and then in
iptables mode, each in a network namespace of its own that carries that node's InternalIPs. What
each programmed, read by ``proxymedic programmed`` (libnftables; ``iptables-save``) inside its
namespace, must equal ``proxymedic expect NODE --mode MODE`` reading the same cluster.

No VM: these modes need no IPVS, and the host's kernel has nf_tables. Needs root, the kube-proxy
binary, and nftables and iptables (``scripts/setup.sh --kernel`` installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import netlab
from tests.cluster.kubeproxy import Relay, relayed_kubeconfig, setup_rbac, stop_process
from tests.expectation.manifests import NODE_IPV4, NODE_IPV6, NODE_NAMES
from tests.realk8s import binaries, matrix
from tests.realk8s.controlplane import ControlPlane

pytestmark = [pytest.mark.realapi, pytest.mark.timeout(600)]

PREFIX = "pm-rules-"
CLUSTER_CIDRS = "10.244.0.0/16,fd00:10:244::/56"
PROGRAM_TIMEOUT = float(os.environ.get("RULES_PROGRAM_TIMEOUT", 180))
MODES = ("nftables", "iptables")


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces for kube-proxy)"
    for tool in ("ip", "nft", "iptables-save", "ip6tables-save"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/setup.sh --kernel installs it)"
    try:
        found = binaries.find(need_proxy=True)
    except binaries.Missing as missing:
        return str(missing)
    if found.kube_proxy is None:
        return "no kube-proxy binary"
    return None


@dataclass
class RulesNode:
    name: str
    ns: str
    mode: str
    proc: subprocess.Popen[bytes]
    log: Path

    def exited(self) -> str:
        lines = self.log.read_text(errors="replace").splitlines()[-5:]
        return f"kube-proxy ({self.mode}) for {self.name} exited ({self.proc.returncode}): " + "\n".join(
            lines
        )

    def programmed(self) -> dict[str, Any]:
        """``proxymedic programmed`` inside the node's namespace, as a user runs it on a node."""
        argv = ["ip", "netns", "exec", self.ns, sys.executable, "-m", "proxymedic.cli.main", "programmed"]
        argv += [self.name, "--mode", self.mode, "-o", "json"]
        argv += [f"--local-address={ip}" for ip in (NODE_IPV4[self.name], NODE_IPV6[self.name])]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        return dict(json.loads(proc.stdout))


def differences(programmed: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """Per Service address, what the rules and the expectation disagree on."""

    def table(view: dict[str, Any]) -> dict[str, list[str]]:
        return {
            f"{vs['protocol']} {vs['address']}:{vs['port']}": [
                f"{rs['address']}:{rs['port']}" for rs in vs["realServers"]
            ]
            for vs in view["virtualServers"]
        }

    found, wanted = table(programmed), table(expected)
    return [
        f"{key}: rules {found.get(key, 'absent')}, expected {wanted.get(key, 'absent')}"
        for key in sorted(set(found) | set(wanted))
        if found.get(key) != wanted.get(key)
    ]


def _namespace(index: int, node: str) -> str:
    ns = f"{PREFIX}{index}"
    netlab.attach(ns, f"pmv-rules{index}", NODE_IPV4[node])
    netlab.ip_batch([f"addr add {NODE_IPV6[node]}/128 dev eth0 nodad"], ns)
    return ns


@pytest.fixture(scope="module", params=MODES)
def rules_nodes(
    request: pytest.FixtureRequest, real_api: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[RulesNode]]:
    reason = _missing()
    if reason is not None:
        pytest.skip(f"kube-proxy rules differential: {reason}")
    mode = str(request.param)
    found = binaries.find(need_proxy=True)
    assert found.kube_proxy is not None
    work = tmp_path_factory.mktemp(f"rules-{mode}")
    netlab.cleanup_namespaces(PREFIX)
    setup_rbac(real_api)
    matrix.apply(real_api)
    nodes: list[RulesNode] = []
    relay: Relay | None = None
    try:
        namespaces = {name: _namespace(index, name) for index, name in enumerate(NODE_NAMES)}
        api = urllib.parse.urlsplit(real_api.server)
        relay = Relay((api.hostname or "127.0.0.1", api.port or 443), listen=netlab.GATEWAY)
        for name, ns in namespaces.items():
            kubeconfig = relayed_kubeconfig(real_api, relay, netlab.GATEWAY, work / f"{name}.kubeconfig")
            log = (work / f"kube-proxy-{name}.log").open("ab")
            argv = ["ip", "netns", "exec", ns, str(found.kube_proxy), f"--kubeconfig={kubeconfig}"]
            argv += [f"--hostname-override={name}", f"--proxy-mode={mode}", f"--cluster-cidr={CLUSTER_CIDRS}"]
            # The conntrack table and its sysctls are the host's; kube-proxy leaves them alone.
            argv += ["--conntrack-max-per-core=0", "--v=2"]
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
            log.close()
            nodes.append(RulesNode(name, ns, mode, proc, work / f"kube-proxy-{name}.log"))
        yield nodes
    finally:
        for node in nodes:
            stop_process(node.proc)
        if relay is not None:
            relay.close()
        netlab.cleanup_namespaces(PREFIX)
        matrix.remove(real_api)


def test_kube_proxy_rules_are_what_proxymedic_expects(
    real_api: ControlPlane, rules_nodes: list[RulesNode]
) -> None:
    mode = rules_nodes[0].mode
    expected = {node.name: matrix.expect_json(real_api, node.name, mode) for node in rules_nodes}
    assert len({json.dumps(e, sort_keys=True) for e in expected.values()}) == len(rules_nodes)
    started = time.monotonic()
    latest: dict[str, dict[str, Any]] = {}
    agreed: dict[str, float] = {}
    while len(agreed) < len(rules_nodes) and time.monotonic() < started + PROGRAM_TIMEOUT:
        for node in rules_nodes:
            assert node.proc.poll() is None, node.exited()
            if node.name not in agreed:
                latest[node.name] = node.programmed()
                if latest[node.name] == expected[node.name]:
                    agreed[node.name] = time.monotonic() - started
        time.sleep(1)
    print(
        f"rules differential ({mode}): agreed after {json.dumps({k: round(v, 1) for k, v in agreed.items()})}"
    )
    for node in rules_nodes:
        assert latest[node.name] == expected[node.name], (
            f"{node.name} ({mode}): the rules differ from `proxymedic expect`: "
            + "; ".join(differences(latest[node.name], expected[node.name]))
        )
