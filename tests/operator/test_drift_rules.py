"""Drift on nodes whose kube-proxy runs in nftables or iptables mode, judged against that mode.

The agent reports kube-proxy's rules in IPVS mode's shape; the operator must judge them against
what kube-proxy programs in the node's own mode. IPVS mode's expectation on such a node is a
false restart waiting to happen: under a Local traffic policy with no local endpoint, IPVS mode
falls back to every endpoint, the rule modes drop the traffic, so a healthy nftables node would
"miss" backends. A rule that still sends traffic to a backend that left cannot be removed by
ProxyMedic (it never edits kube-proxy's rules): it is kube-proxy's cache, cured by a restart,
and only once it has outlasted the time kube-proxy may take to program the change.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from proxymedic.api.health import FindingType, NodeProxyHealthStatus, ProxyMode
from proxymedic.expectation import ProxyOptions, expect_from_objects
from proxymedic.operator.drift import Ladder, detect
from proxymedic.operator.guardrails import ActionKind
from tests.expectation.cases import CASES, Case
from tests.expectation.manifests import NODE_NAMES, NODES, W2, W3, VirtualServerRow
from tests.operator.test_drift_expected import BY_NAME, T0, cluster_of, findings, report

pytestmark = pytest.mark.unit

RULE_MODES = (ProxyMode.NFTABLES, ProxyMode.IPTABLES)


def programmed(case: Case, node: str, mode: ProxyMode) -> list[VirtualServerRow]:
    """What kube-proxy in ``mode`` programs on the node, as rows of the matrix."""
    found = expect_from_objects([*case.manifests, *NODES], node, ProxyOptions(mode=str(mode)))
    return [
        (
            vs.address,
            vs.port,
            vs.protocol,
            tuple(
                f"[{rs.address}]:{rs.port}" if ":" in rs.address else f"{rs.address}:{rs.port}"
                for rs in vs.real_servers
            ),
        )
        for vs in found.virtual_servers
    ]


def in_mode(status: NodeProxyHealthStatus, mode: ProxyMode) -> NodeProxyHealthStatus:
    return status.model_copy(update={"proxy_mode": mode})


@pytest.mark.parametrize("mode", RULE_MODES)
@pytest.mark.parametrize("node", NODE_NAMES)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_a_rule_mode_node_as_kube_proxy_programs_it_has_no_findings(
    case: Case, node: str, mode: ProxyMode
) -> None:
    assert findings(case, node, in_mode(report(programmed(case, node, mode)), mode)) == []


def test_the_same_rules_judged_as_ipvs_would_be_a_false_restart() -> None:
    """internalTrafficPolicy Local with a NodePort, no endpoint on kind-worker3: the rules drop the
    ClusterIP's traffic, IPVS mode falls back to every endpoint."""
    case = BY_NAME["internal-local-with-node-port"]
    rules = report(programmed(case, W3, ProxyMode.NFTABLES))
    assert findings(case, W3, in_mode(rules, ProxyMode.NFTABLES)) == []
    as_ipvs = findings(case, W3, in_mode(rules, ProxyMode.IPVS))
    assert len(as_ipvs) == 2
    assert {kind for kind, _ in as_ipvs} == {FindingType.MISSING_REAL_SERVER}


STALE = "10.244.9.99"


def stale_rule_report(mode: ProxyMode) -> tuple[Case, NodeProxyHealthStatus]:
    """kind-worker2's rules of a ClusterIP Service still send traffic to a backend that left."""
    case = BY_NAME["internal-traffic-policy-local"]
    rows = programmed(case, W2, mode)
    address, port, protocol, real = next(row for row in rows if row[3])
    target = int(real[0].rpartition(":")[2])
    rows = [row for row in rows if row[:3] != (address, port, protocol)]
    rows.append((address, port, protocol, (*real, f"{STALE}:{target}")))
    return case, in_mode(report(rows), mode)


@pytest.mark.parametrize("mode", RULE_MODES)
def test_a_stale_rule_is_found_as_a_rule_not_a_real_server(mode: ProxyMode) -> None:
    case, status = stale_rule_report(mode)
    cluster = cluster_of(case)
    entry = cluster.policies["coredns"]
    assert entry.policy is not None
    found = detect(W2, status, cluster.selected_vips(entry.policy))
    assert [(f.type, f.backend) for f in found] == [(FindingType.STALE_RULE, STALE)]
    assert f"kube-proxy's {mode} rules of " in found[0].message
    assert "still send traffic to 10.244.9.99" in found[0].message


@pytest.mark.parametrize("mode", RULE_MODES)
def test_a_stale_rule_restarts_kube_proxy_only_after_the_program_grace(mode: ProxyMode) -> None:
    """Never a real server removal (there is none to remove); a restart once the rule has outlasted
    staleAfter (kube-proxy's time to program a change) and the minimum observation."""
    case, status = stale_rule_report(mode)
    cluster = cluster_of(case)
    entry = cluster.policies["coredns"]
    assert entry.policy is not None
    found = detect(W2, status, cluster.selected_vips(entry.policy))
    ladder = Ladder(min_observation=timedelta(seconds=30), program_grace=timedelta(seconds=60))
    ladder.observe(W2, found, T0)
    for held in (0, 30, 60, 89):
        assert ladder.steps(W2, found, T0 + timedelta(seconds=held)) == []
        assert ladder.restart_candidates({W2: found}, T0 + timedelta(seconds=held)) == frozenset()
    steps = ladder.steps(W2, found, T0 + timedelta(seconds=90))
    assert [(step.kind, step.remove_real_servers) for step in steps] == [
        (ActionKind.RESTART_KUBE_PROXY, False)
    ]
    assert ladder.restart_candidates({W2: found}, T0 + timedelta(seconds=90)) == {W2}


@pytest.mark.parametrize("mode", RULE_MODES)
def test_conntrack_entries_answered_by_a_backend_that_left_are_flushed(mode: ProxyMode) -> None:
    """The rules are right; conntrack still sends clients' flows to the dead pod: flush, nothing else."""
    case = BY_NAME["internal-traffic-policy-local"]
    body = in_mode(report(programmed(case, W2, mode)), mode).model_dump(by_alias=True, mode="json")
    served = next(vs for vs in body["virtualServers"] if vs["realServers"])
    served["orphanedConnections"] = [
        {"ip": STALE, "port": served["realServers"][0]["port"], "connections": 3}
    ]
    status = NodeProxyHealthStatus.model_validate(body)
    cluster = cluster_of(case)
    entry = cluster.policies["coredns"]
    assert entry.policy is not None
    findings = detect(W2, status, cluster.selected_vips(entry.policy))
    assert [(f.type, f.backend) for f in findings] == [(FindingType.STALE_CONNECTIONS, STALE)]
    ladder = Ladder(min_observation=timedelta(seconds=30), program_grace=timedelta(seconds=60))
    ladder.observe(W2, findings, T0)
    steps = ladder.steps(W2, findings, T0 + timedelta(seconds=30))
    assert [(step.kind, step.remove_real_servers) for step in steps] == [
        (ActionKind.FLUSH_STALE_BACKENDS, False)
    ]
