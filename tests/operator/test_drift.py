"""Drift findings from a node's report, and the escalation ladder over time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from proxymedic.api.health import FindingType, NodeProxyHealthStatus
from proxymedic.operator.backends import ServiceRef
from proxymedic.operator.drift import Ladder, SelectedVip, detect
from proxymedic.operator.guardrails import ActionKind

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
DNS = ServiceRef("kube-system", "kube-dns")
SELECTED = {("10.96.0.10", 53, "UDP"): SelectedVip(DNS, "coredns", frozenset({"10.0.0.2", "10.0.0.3"}), 53)}


def status(
    real_servers: list[str],
    orphans: dict[str, int] | None = None,
    freshness: str = "Fresh",
    findings: list[dict[str, Any]] | None = None,
) -> NodeProxyHealthStatus:
    return NodeProxyHealthStatus.model_validate(
        {
            "observedAt": T0.isoformat(),
            "kubeProxy": {"freshness": freshness, "reason": "no sync for 5m with 3 changes pending"},
            "virtualServers": [
                {
                    "vip": "10.96.0.10",
                    "port": 53,
                    "protocol": "UDP",
                    "realServers": [{"ip": ip, "port": 53, "weight": 1} for ip in real_servers],
                    "orphanedConnections": [
                        {"ip": ip, "port": 53, "connections": n} for ip, n in (orphans or {}).items()
                    ],
                },
                {
                    "vip": "10.96.0.99",
                    "port": 53,
                    "protocol": "UDP",
                    "realServers": [{"ip": "10.9.9.9", "port": 53, "weight": 1}],
                },
            ],
            "findings": findings or [],
        }
    )


def kinds(node_status: NodeProxyHealthStatus) -> list[tuple[FindingType, str | None]]:
    return [(f.type, f.backend) for f in detect("n1", node_status, SELECTED)]


def test_clean_node_has_no_findings() -> None:
    assert kinds(status(["10.0.0.2", "10.0.0.3"])) == []


def test_stale_missing_and_orphaned() -> None:
    found = kinds(status(["10.0.0.1", "10.0.0.2"], orphans={"10.0.0.4": 7, "10.0.0.5": 0}))
    assert (FindingType.STALE_REAL_SERVER, "10.0.0.1") in found
    assert (FindingType.STALE_CONNECTIONS, "10.0.0.4") in found
    assert (FindingType.MISSING_REAL_SERVER, "10.0.0.3") in found
    assert all(backend != "10.0.0.5" for _, backend in found), "no connections, nothing stale"
    assert all(backend != "10.9.9.9" for _, backend in found), "unselected VIPs are not judged"


def test_stale_sync_and_node_local_findings() -> None:
    found = kinds(
        status(
            ["10.0.0.2", "10.0.0.3"],
            freshness="Stale",
            findings=[
                {
                    "type": "SysctlDrift",
                    "message": "net.ipv4.vs.expire_nodest_conn is 0",
                    "since": T0.isoformat(),
                }
            ],
        )
    )
    assert found == [(FindingType.KUBE_PROXY_SYNC_STALE, None), (FindingType.SYSCTL_DRIFT, None)]


def test_unknown_freshness_is_no_finding() -> None:
    assert kinds(status(["10.0.0.2", "10.0.0.3"], freshness="Unknown")) == []


def run(ladder: Ladder, node_status: NodeProxyHealthStatus, at: datetime) -> list[tuple[ActionKind, bool]]:
    findings = detect("n1", node_status, SELECTED)
    ladder.observe("n1", findings, at)
    return [(step.kind, step.remove_real_servers) for step in ladder.steps("n1", findings, at)]


def test_ladder_waits_then_removes_then_restarts_on_readd() -> None:
    ladder = Ladder(min_observation=timedelta(seconds=30))
    stale = status(["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    assert run(ladder, stale, T0) == [], "first sight: kube-proxy gets its chance"
    steps = run(ladder, stale, T0 + timedelta(seconds=31))
    assert steps == [(ActionKind.FLUSH_STALE_BACKENDS, True)]
    findings = detect("n1", stale, SELECTED)
    for step in ladder.steps("n1", findings, T0 + timedelta(seconds=31)):
        ladder.acted(step, T0 + timedelta(seconds=31))
    # The removal worked: the finding goes away.
    assert run(ladder, status(["10.0.0.2", "10.0.0.3"]), T0 + timedelta(seconds=40)) == []
    # kube-proxy re-adds it on its next sync: proof of a stale cache, restart at once.
    assert run(ladder, stale, T0 + timedelta(seconds=60)) == [(ActionKind.RESTART_KUBE_PROXY, False)]
    readded = ladder.steps("n1", detect("n1", stale, SELECTED), T0 + timedelta(seconds=60))
    assert readded[0].since == T0 + timedelta(seconds=31), "observed since the removal, not since now"
    assert ladder.restart_candidates({"n1": detect("n1", stale, SELECTED)}, T0 + timedelta(seconds=60)) == {
        "n1"
    }


def test_ladder_flushes_orphaned_connections_after_observation() -> None:
    ladder = Ladder(min_observation=timedelta(seconds=30))
    orphaned = status(["10.0.0.2", "10.0.0.3"], orphans={"10.0.0.1": 4})
    assert run(ladder, orphaned, T0) == []
    assert run(ladder, orphaned, T0 + timedelta(seconds=30)) == [(ActionKind.FLUSH_STALE_BACKENDS, False)]


def test_missing_real_server_or_stale_sync_escalates_to_restart() -> None:
    ladder = Ladder(min_observation=timedelta(seconds=30))
    missing = status(["10.0.0.2"])
    assert run(ladder, missing, T0) == []
    found = {"n1": detect("n1", missing, SELECTED)}
    assert ladder.restart_candidates(found, T0) == set(), (
        "a fresh gap is kube-proxy catching up, not staleness"
    )
    assert run(ladder, missing, T0 + timedelta(minutes=1)) == [(ActionKind.RESTART_KUBE_PROXY, False)]
    assert ladder.restart_candidates(found, T0 + timedelta(minutes=1)) == {"n1"}


def test_one_sysctl_step_per_round() -> None:
    ladder = Ladder(min_observation=timedelta(seconds=0))
    drifted = status(
        ["10.0.0.2", "10.0.0.3"],
        findings=[
            {"type": "SysctlDrift", "message": "expire_nodest_conn is 0", "since": T0.isoformat()},
            {"type": "SysctlDrift", "message": "expire_quiescent_template is 0", "since": T0.isoformat()},
        ],
    )
    assert run(ladder, drifted, T0) == [(ActionKind.ENFORCE_SYSCTLS, False)]


def test_a_finding_that_disappears_starts_over() -> None:
    ladder = Ladder(min_observation=timedelta(seconds=30))
    stale = status(["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    run(ladder, stale, T0)
    run(ladder, status(["10.0.0.2", "10.0.0.3"]), T0 + timedelta(seconds=20))
    assert run(ladder, stale, T0 + timedelta(seconds=40)) == [], "seen again only just now"
