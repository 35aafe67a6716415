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

import asyncio
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from proxymedic.api.health import FindingType, NodeProxyHealthStatus
from proxymedic.cli.runbook_commands import read_cluster
from proxymedic.kube.config import load_connection
from proxymedic.operator.causality import Evidence
from proxymedic.operator.drift import RESTART_WORTHY
from proxymedic.operator.watch import MARGIN, SETTLE, WatchLiveness
from proxymedic.runbook.judge import findings_of
from proxymedic.runbook.snapshot import Snapshot, build_view
from tests.cluster import netlab
from tests.cluster.kubeproxy import Relay, relayed_kubeconfig, setup_rbac, stop_process
from tests.expectation import manifests
from tests.expectation.manifests import NODE_IPV4, NODE_IPV6, NODE_NAMES
from tests.realk8s import binaries, matrix
from tests.realk8s.controlplane import ControlPlane, free_port

pytestmark = [pytest.mark.realapi, pytest.mark.timeout(600)]

PREFIX = "pm-rules-"
CLUSTER_CIDRS = "10.244.0.0/16,fd00:10:244::/56"
PROGRAM_TIMEOUT = float(os.environ.get("RULES_PROGRAM_TIMEOUT", 180))
MODES = ("nftables", "iptables")


STALL_VIP, STALL_NEAR, STALL_FAR = "10.96.99.53", "10.244.1.253", "10.244.2.253"
"""A UDP Service with an endpoint on kind-worker and one on kind-worker2; the judgement test stalls
kind-worker's kube-proxy and takes kind-worker2's endpoint away."""
STALL_PORT = [("dns", 53, "UDP")]
STALL_SERVICE = manifests.service("stall-dns", [manifests.port("dns", 53, "UDP")], [STALL_VIP])


def stall_slice(*addresses: str) -> dict[str, Any]:
    nodes = {STALL_NEAR: manifests.W1, STALL_FAR: manifests.W2}
    return manifests.endpoint_slice(
        "stall-dns", "a", [manifests.endpoint(ip, nodes[ip]) for ip in addresses], STALL_PORT
    )


STALL_OBJECTS = [STALL_SERVICE, stall_slice(STALL_NEAR, STALL_FAR)]


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
    relay: Relay
    """kube-proxy's own path to the API server: ``relay.blackhole()`` stalls this one kube-proxy."""

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
    for manifest in STALL_OBJECTS:
        matrix.create_or_replace(real_api, manifest)
    nodes: list[RulesNode] = []
    relays: list[Relay] = []
    try:
        namespaces = {name: _namespace(index, name) for index, name in enumerate(NODE_NAMES)}
        api = urllib.parse.urlsplit(real_api.server)
        for name, ns in namespaces.items():
            relay = Relay((api.hostname or "127.0.0.1", api.port or 443), listen=netlab.GATEWAY)
            relays.append(relay)
            kubeconfig = relayed_kubeconfig(real_api, relay, netlab.GATEWAY, work / f"{name}.kubeconfig")
            log = (work / f"kube-proxy-{name}.log").open("ab")
            argv = ["ip", "netns", "exec", ns, str(found.kube_proxy), f"--kubeconfig={kubeconfig}"]
            argv += [f"--hostname-override={name}", f"--proxy-mode={mode}", f"--cluster-cidr={CLUSTER_CIDRS}"]
            # The conntrack table and its sysctls are the host's; kube-proxy leaves them alone.
            argv += ["--conntrack-max-per-core=0", "--v=2"]
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
            log.close()
            nodes.append(RulesNode(name, ns, mode, proc, work / f"kube-proxy-{name}.log", relay))
        yield nodes
    finally:
        for node in nodes:
            stop_process(node.proc)
        for relay in relays:
            relay.close()
        netlab.cleanup_namespaces(PREFIX)
        matrix.remove(real_api)
        for manifest in STALL_OBJECTS:
            real_api.request("DELETE", matrix.path_of(manifest))


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


JUDGEMENT_POLICY: dict[str, Any] = {
    "apiVersion": "proxymedic.io/v1alpha1",
    "kind": "ProxyHealthPolicy",
    "metadata": {"name": "rules-judgement"},
    "spec": {
        "services": {"namespaces": [manifests.NAMESPACE], "protocols": ["UDP"]},
        # No flush: an open intent for the backend that leaves would hide its stale rule from the
        # judgement until every node verified it, and the operator runs here too.
        "actions": {
            "flushStaleConnections": {"enabled": False},
            "removeStaleRealServers": {"enabled": False},
            # Short: client-go finds the blackholed connection dead after about 45 s, and kube-proxy
            # then lists everything again; the silence must be judged before that.
            "restartKubeProxy": {"enabled": True, "staleAfter": "10s"},
        },
        "guardrails": {"dryRun": True, "minObservation": "5s"},
    },
}
REPORT_TIMEOUT = float(os.environ.get("RULES_REPORT_TIMEOUT", 120))


@dataclass
class Agent:
    node: RulesNode
    proc: subprocess.Popen[bytes]
    log: Path


def start_agent(node: RulesNode, kubeconfig: Path, work: Path) -> Agent:
    """``proxymedic agent`` in the node's namespace, as the DaemonSet runs it in the host's."""
    log = work / f"agent-{node.name}.log"
    argv = ["ip", "netns", "exec", node.ns, sys.executable, "-m", "proxymedic.cli.main", "agent"]
    argv += [f"--node-name={node.name}", f"--kubeconfig={kubeconfig}", "--metrics-port=0"]
    argv += ["--sense-interval=1s", "--heartbeat=3s"]
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    return Agent(node, proc, log)


@dataclass
class Operator:
    proc: subprocess.Popen[bytes]
    log: Path

    def running(self) -> None:
        assert self.proc.poll() is None, self.log.read_text(errors="replace")[-3000:]


def start_operator(plane: ControlPlane, work: Path) -> Operator:
    """``proxymedic operator`` on the host with the admin's kubeconfig, as one replica runs it."""
    log = work / "operator.log"
    argv = [sys.executable, "-m", "proxymedic.cli.main", "operator", f"--kubeconfig={plane.kubeconfig}"]
    argv += [
        "--standalone",
        "--metrics-port=0",
        f"--liveness-endpoint=http://127.0.0.1:{free_port()}/healthz",
    ]
    argv += ["--housekeeping-interval=1s"]
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    return Operator(proc, log)


def operator_sees_nodes(plane: ControlPlane, operator: Operator) -> dict[str, Any] | None:
    """The policy's status counts every node: the operator holds a report of each."""
    operator.running()
    name = JUDGEMENT_POLICY["metadata"]["name"]
    status, body = plane.request("GET", f"/apis/proxymedic.io/v1alpha1/proxyhealthpolicies/{name}")
    assert status == 200, body
    found: dict[str, Any] = body.get("status") or {}
    return found if found.get("selectedNodes") == len(NODE_NAMES) else None


def events_of(
    plane: ControlPlane, reason: str, operator: Operator, since: datetime
) -> list[tuple[str, str]] | None:
    """(object name, message) of every Event of this reason made since ``since`` (an earlier run's
    are not this one's); None while there is none."""
    operator.running()
    status, body = plane.request("GET", f"/api/v1/events?fieldSelector=reason%3D{reason}")
    assert status == 200, body
    found = sorted(
        (e["involvedObject"]["name"], e["message"])
        for e in body.get("items", [])
        if datetime.fromisoformat(e["metadata"]["creationTimestamp"]) >= since.replace(microsecond=0)
    )
    return found or None


def report_of(plane: ControlPlane, node: str) -> NodeProxyHealthStatus | None:
    status, body = plane.request("GET", f"/apis/proxymedic.io/v1alpha1/nodeproxyhealths/{node}")
    if status != 200 or not body.get("status", {}).get("observedAt"):
        return None
    return NodeProxyHealthStatus.model_validate(body["status"])


def report_after(plane: ControlPlane, agent: Agent, moment: datetime) -> NodeProxyHealthStatus:
    """The node's first report sensed after ``moment``: evidence of the state from then on."""

    def fresh() -> NodeProxyHealthStatus | None:
        assert agent.proc.poll() is None, agent.log.read_text(errors="replace")[-2000:]
        found = report_of(plane, agent.node.name)
        return found if found is not None and found.observed_at > moment else None

    found = netlab.wait_for(f"{agent.node.name}'s report after {moment}", fresh, REPORT_TIMEOUT, every=0.5)
    assert isinstance(found, NodeProxyHealthStatus)
    return found


def judged(plane: ControlPlane) -> dict[str, list[tuple[str, str | None]]]:
    """What the operator finds on every node, from the API as it is now (``proxymedic diagnose``'s
    judgement: the operator's own functions, every report taken as evidence)."""

    async def read() -> Snapshot:
        return await read_cluster(load_connection(str(plane.kubeconfig)))

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        snapshot = pool.submit(asyncio.run, read()).result()
    view = build_view(snapshot)
    now = datetime.now(UTC)
    return {
        node: sorted((str(f.type), f.backend) for f in findings_of(view, node, now)) for node in NODE_NAMES
    }


Reports = dict[str, NodeProxyHealthStatus]


def watch_judgement(before: Reports, settled: Reports, after: Reports) -> dict[str, str]:
    """The operator's cross-node judgement of kube-proxy's counters (``operator/watch.py``) on the real
    reports, sensing rounds and all, received on a clock that puts the slice change after ``before``
    and lets it settle before ``settled``; ``after`` are sensed later still."""
    evidence, watch = Evidence(), WatchLiveness()
    start = datetime.now(UTC)

    def receive(reports: Reports, at: datetime) -> None:
        for name, status in reports.items():
            assert evidence.seen(name, status, at)
            watch.reported(name, status, at, evidence)

    receive(before, start)
    watch.slice_changed(start + MARGIN)
    receive(settled, start + MARGIN + SETTLE)
    receive(after, start + MARGIN + SETTLE + timedelta(seconds=1))
    stale_after = timedelta(seconds=30)
    now = start + MARGIN + stale_after
    return {
        name: found.message for name in before if (found := watch.finding(name, now, stale_after)) is not None
    }


def udp_view(servers: Any) -> dict[tuple[str, int], list[str]]:
    return {
        (vs["address"], vs["port"]): sorted(f"{rs['address']}:{rs['port']}" for rs in vs["realServers"])
        for vs in servers
        if vs["protocol"] == "UDP"
    }


def test_agents_report_the_rules_and_only_a_stalled_kube_proxy_is_found(
    real_api: ControlPlane, rules_nodes: list[RulesNode], tmp_path: Path
) -> None:
    """The real agent on each node reads its real kube-proxy's rules: healthy nodes, judged against
    the expectation of their mode, have no finding at all (no Local fallback taken for missing
    backends, no NodePort, zone or family confusion); then one kube-proxy's API connection dies
    silently, a backend leaves, and that node alone has a stale rule, which is restart-worthy, and a
    counter of EndpointSlice events that stayed flat while the two others counted the change."""
    mode = rules_nodes[0].mode
    expected = {node.name: matrix.expect_json(real_api, node.name, mode) for node in rules_nodes}
    for node in rules_nodes:  # kube-proxy has programmed the whole matrix (the differential's check)
        netlab.wait_for(
            f"{node.name}'s kube-proxy to program the matrix",
            partial(lambda node: node.programmed() == expected[node.name], node),
            PROGRAM_TIMEOUT,
            every=1,
        )
    programmed_at = datetime.now(UTC)
    real_api.apply([JUDGEMENT_POLICY])
    api = urllib.parse.urlsplit(real_api.server)
    relay = Relay((api.hostname or "127.0.0.1", api.port or 443), listen=netlab.GATEWAY)
    # Not the chart's agent token (tests/realapi/test_security.py exercises that one): the admin's.
    kubeconfig = relayed_kubeconfig(
        real_api, relay, netlab.GATEWAY, tmp_path / "agents.kubeconfig", real_api.admin_token
    )
    agents = [start_agent(node, kubeconfig, tmp_path) for node in rules_nodes]
    operator: Operator | None = None
    try:
        reports = {agent.node.name: report_after(real_api, agent, programmed_at) for agent in agents}
        for name, report in reports.items():
            assert report.proxy_mode == mode, report.problems
            assert report.problems == []
            sensed = udp_view(
                {
                    "address": vs.vip,
                    "port": vs.port,
                    "protocol": str(vs.protocol),
                    "realServers": [{"address": rs.ip, "port": rs.port} for rs in vs.real_servers],
                }
                for vs in report.virtual_servers
            )
            wanted = udp_view(expected[name]["virtualServers"])
            assert {key: sensed.get(key) for key in wanted} == wanted, f"{name}: the agent's report"
        assert judged(real_api) == {name: [] for name in NODE_NAMES}, "healthy nodes have findings"

        # Started now: its policy status scopes what the agents sense to the policy's Services.
        operator = start_operator(real_api, tmp_path)
        netlab.wait_for(
            "the operator to hold every node's report", partial(operator_sees_nodes, real_api, operator), 60
        )
        # The operator compares each counter with the one it received MARGIN before a change: that
        # report must exist before the change is made.
        time.sleep(MARGIN.total_seconds() + 1)
        stalled, healthy = rules_nodes[0], rules_nodes[1:]
        assert stalled.relay.blackhole() > 0
        matrix.create_or_replace(real_api, stall_slice(STALL_NEAR))
        far = f"{STALL_FAR}:53"

        def gone_from(node: RulesNode) -> bool:
            return far not in udp_view(node.programmed()["virtualServers"]).get((STALL_VIP, 53), [far])

        for node in healthy:
            netlab.wait_for(f"{node.name} to drop {far}", partial(gone_from, node), PROGRAM_TIMEOUT)
        changed_at = datetime.now(UTC)
        assert not gone_from(stalled), "the stalled kube-proxy saw the change"
        settled = {agent.node.name: report_after(real_api, agent, changed_at) for agent in agents}
        after = {
            name: report_after(real_api, agents[i], settled[name].observed_at)
            for i, name in enumerate(settled)
        }
        counted = {
            name: (
                reports[name].kube_proxy.endpoint_changes_total,
                after[name].kube_proxy.endpoint_changes_total,
            )
            for name in reports
        }
        print(f"rules judgement ({mode}): EndpointSlice events counted before and after the change {counted}")
        assert counted[stalled.name][0] is not None, "kube-proxy exports no endpoint changes counter"
        assert counted[stalled.name][0] == counted[stalled.name][1], "the stalled kube-proxy counted"
        for node in healthy:
            assert (counted[node.name][0] or 0) < (counted[node.name][1] or 0), f"{node.name} counted nothing"
        silent = watch_judgement(reports, settled, after)
        assert list(silent) == [stalled.name], silent
        assert "2 of 2 other nodes' kube-proxies counted" in silent[stalled.name]
        findings = judged(real_api)
        print(f"rules judgement ({mode}): after the change, {json.dumps(findings)}")
        assert findings == {
            stalled.name: [(str(FindingType.STALE_RULE), STALL_FAR)],
            **{node.name: [] for node in healthy},
        }
        assert FindingType.STALE_RULE in RESTART_WORTHY

        # The real operator, fed by the real agents, finds the silent watch on that node alone.
        warned = netlab.wait_for(
            "the operator's KubeProxyWatchSilent Event",
            partial(events_of, real_api, "KubeProxyWatchSilent", operator, programmed_at),
            REPORT_TIMEOUT,
            every=1,
        )
        print(f"rules judgement ({mode}): the operator's Events {json.dumps(warned)}")
        assert [node for node, _ in warned] == [stalled.name], warned
        assert "2 of 2 other nodes' kube-proxies counted" in warned[0][1]

        # client-go's HTTP/2 health check ends the dead connection, kube-proxy lists every slice
        # again through a new one (the relay lets new connections pass), and its count moves on.
        def relisted() -> NodeProxyHealthStatus | None:
            found = report_of(real_api, stalled.name)
            count = found.kube_proxy.endpoint_changes_total if found is not None else None
            return found if count is not None and count > (counted[stalled.name][0] or 0) else None

        healed = netlab.wait_for(
            f"{stalled.name}'s kube-proxy to reconnect", relisted, REPORT_TIMEOUT, every=1
        )
        print(
            f"rules judgement ({mode}): {stalled.name}'s kube-proxy counted again "
            f"{(healed.observed_at - changed_at).total_seconds():.0f} s after the change "
            f"({counted[stalled.name][0]} -> {healed.kube_proxy.endpoint_changes_total})"
        )
    finally:
        policy = "/apis/proxymedic.io/v1alpha1/proxyhealthpolicies/rules-judgement"
        real_api.request("DELETE", policy)
        if operator is not None:
            # Kopf put its finalizer on the policy (its timer's): the running operator takes it off.
            netlab.wait_for("the policy's deletion", lambda: real_api.request("GET", policy)[0] == 404, 60)
            stop_process(operator.proc)
        for agent in agents:
            stop_process(agent.proc)
        real_api.request("DELETE", "/apis/proxymedic.io/v1alpha1/remediationintents")
        relay.close()
