"""``proxymedic status``, ``diagnose`` and ``explain`` against the API emulator, with output snapshots.

The cluster is fixed (tests/cli/cluster.py) and the clock is fixed, so the output is too; it
is compared with tests/cli/snapshots/. After an intended change of the output, regenerate
the snapshots with ``PROXYMEDIC_UPDATE_SNAPSHOTS=1 pytest tests/cli`` and review the diff.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.cli.conftest import Run
from tests.cli.snapshots import check

pytestmark = pytest.mark.emulator


def test_status_shows_policies_nodes_by_health_intents_and_recent_actions(run: Run, populated: Path) -> None:
    result = run("status", kubeconfig=populated)
    assert (result.code, result.err) == (0, "")
    check("status.txt", result.out)
    lines = result.out.splitlines()
    assert "NODES (2 fresh, 1 stale, 0 unknown, 1 agent silent, 1 no agent)" in lines
    row = {line.split()[0]: line.split() for line in lines if line.startswith("node-")}
    assert row["node-3"][1] == "stale"  # kube-proxy's sync looks fresh, its rules do not
    assert row["node-3"][3] == "Fresh"
    assert row["node-4"][1:3] == ["agent", "silent"]
    assert row["node-5"][1:3] == ["no", "agent"]
    assert row["node-4"][-1] == "20m"
    policy = next(line for line in lines if line.startswith("coredns"))
    assert policy.split()[1:4] == ["Active", "1", "3"]
    assert policy.endswith("StaleConnectionsFlushed Service kube-dns (3m12s ago)")
    held = next(line for line in lines if "RemediationHeld" in line)
    assert held.split()[:2] == ["12s", "Warning"]
    assert "kube-dns-flush-77aa01c3d2" in result.out  # the open intent
    # Detections are not remediations or holds: the status leaves them to diagnose.
    assert "KubeProxySyncStale" not in result.out


def test_status_as_json_and_yaml(run: Run, populated: Path) -> None:
    as_json = run("status", "-o", "json", kubeconfig=populated)
    as_yaml = run("status", "--output", "yaml", kubeconfig=populated)
    assert as_json.code == as_yaml.code == 0
    check("status.json", as_json.out)
    check("status.yaml", as_yaml.out)
    data = json.loads(as_json.out)
    assert yaml.safe_load(as_yaml.out) == data
    assert data["generatedAt"] == "2026-03-02T09:30:00Z"
    assert data["nodeCounts"] == {"fresh": 2, "stale": 1, "unknown": 0, "agent silent": 1, "no agent": 1}
    nodes = {node["name"]: node for node in data["nodes"]}
    assert nodes["node-3"]["findings"] == [
        "ConntrackPressure",
        "MissingRealServer",
        "StaleConnections",
        "StaleRealServer",
    ]
    assert nodes["node-2"]["findings"] == ["SysctlDrift"]
    assert [e["reason"] for e in data["events"]] == [
        "RemediationHeld",
        "KubeProxyRestarted",
        "StaleConnectionsFlushed",
        "SysctlsEnforced",
    ]


def test_diagnose_answers_every_runbook_step_for_a_stale_node(run: Run, populated: Path) -> None:
    result = run("diagnose", "node-3", kubeconfig=populated)
    assert (result.code, result.err) == (0, "")
    check("diagnose-node-3.txt", result.out)
    assert result.out.splitlines()[0] == "NODE node-3   health: stale   verdict: PROBLEM   scope: node-local"
    titles = [
        line.split("  ")[0] for line in result.out.splitlines() if line[:2] in {f"{n}." for n in range(1, 9)}
    ]
    assert titles == [
        "1. Proxy mode",
        "2. Connections stuck to terminated backends",
        "3. kube-proxy sync freshness",
        "4. Real servers vs EndpointSlices",
        "5. Conntrack: overlap and pressure",
        "6. Sysctl drift",
        "7. Node-local or cluster-wide",
        "8. What ProxyMedic did and would do",
    ]
    assert "ipvsadm -Lcn" in result.out
    assert "healthz is not enough" in result.out
    assert "restart kube-proxy (held by NodeCooldown)" in result.out


def test_diagnose_as_json_names_the_guardrail_that_holds_each_action(run: Run, populated: Path) -> None:
    result = run("diagnose", "node-3", "-o", "json", kubeconfig=populated)
    assert result.code == 0
    check("diagnose-node-3.json", result.out)
    data = json.loads(result.out)
    steps = {step["key"]: step for step in data["steps"]}
    assert [step["verdict"] for step in data["steps"]] == [
        "info",
        "problem",
        "problem",
        "problem",
        "problem",
        "ok",
        "info",
        "info",
    ]
    assert steps["real-servers"]["facts"] == {"services": 1, "stale": 1, "missing": 1}
    assert steps["stuck-connections"]["facts"]["stuckConnections"] == 6
    would = {entry["action"]: entry for entry in steps["proxymedic"]["facts"]["wouldDo"]}
    assert would["RestartKubeProxy"]["heldBy"] == "NodeCooldown"
    assert would["RaiseConntrackMax"]["heldBy"] == "ActionDisabled"
    assert would["RemoveStaleRealServer"]["allowed"] is True
    assert would["FlushStaleBackends"]["allowed"] is True


def test_diagnose_a_node_with_sysctl_drift(run: Run, populated: Path) -> None:
    result = run("diagnose", "node-2", kubeconfig=populated)
    assert result.code == 0
    check("diagnose-node-2.txt", result.out)
    assert "drift: net.ipv4.vs.expire_nodest_conn=0" in result.out
    assert "would set the IPVS sysctls to 1 (held by ActionDisabled)" in result.out


def test_diagnose_a_healthy_node(run: Run, populated: Path) -> None:
    data = yaml.safe_load(run("diagnose", "node-1", "-o", "yaml", kubeconfig=populated).out)
    assert data["verdict"] == "ok"
    assert data["scope"] == "healthy"
    assert data["summary"] == ["nothing to do, nothing done"]


def test_diagnose_a_silent_agent_says_the_report_is_old(run: Run, populated: Path) -> None:
    data = yaml.safe_load(run("diagnose", "node-4", "-o", "yaml", kubeconfig=populated).out)
    assert data["health"] == "agent silent"
    assert data["summary"][0] == "the agent's last report is 20m old: what follows may be out of date"
    assert data["verdict"] == "unknown"


@pytest.mark.parametrize("word", ["RemediationHeld", "nodecooldown", "KubeProxyRestarted"])
def test_explain(run: Run, word: str) -> None:
    result = run("explain", word)
    assert (result.code, result.err) == (0, "")
    check(f"explain-{word}.txt", result.out)
    assert "What to do" in result.out


def test_explain_lists_every_reason_and_as_json(run: Run) -> None:
    listing = run("explain")
    assert listing.code == 0
    check("explain.txt", listing.out)
    data = json.loads(run("explain", "DryRun", "-o", "json").out)
    assert data["name"] == "DryRun"
    assert data["type"] == "Normal"
    assert data["todo"]
