"""Drift findings from a node's report, and the escalation ladder over time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from proxymedic.api.health import FindingType, NodeProxyHealthStatus
from proxymedic.operator.backends import ServiceRef
from proxymedic.operator.causality import sensed
from proxymedic.operator.drift import DriftFinding, Ladder, SelectedVip, detect
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
    round_: int | None = None,
    results: list[dict[str, Any]] | None = None,
) -> NodeProxyHealthStatus:
    return NodeProxyHealthStatus.model_validate(
        {
            "observedAt": T0.isoformat(),
            "incarnation": "agent-1",
            "round": round_,
            "recentResults": results or [],
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


def judged(ladder: Ladder, node_status: NodeProxyHealthStatus) -> list[DriftFinding]:
    """What NodeRepairs hands the ladder: removals verified from the report's results first."""
    round_ = sensed(node_status)
    ladder.verify_removals("n1", round_, node_status.recent_results, lambda _: True)
    return ladder.judge_removals("n1", detect("n1", node_status, SELECTED), round_)


def run(ladder: Ladder, node_status: NodeProxyHealthStatus, at: datetime) -> list[tuple[ActionKind, bool]]:
    findings = judged(ladder, node_status)
    ladder.observe("n1", findings, at)
    return [(step.kind, step.remove_real_servers) for step in ladder.steps("n1", findings, at)]


REMOVAL = "kube-dns-flush-n1"
STALE = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def removed(verified_round: int, outcome: str = "Applied") -> list[dict[str, Any]]:
    """The node's result for the removal, verified by the given sensing round."""
    return [
        {
            "intent": REMOVAL,
            "outcome": outcome,
            "completedAt": T0.isoformat(),
            "removedRealServers": 1,
            "verifiedRound": verified_round,
        }
    ]


def test_ladder_waits_then_removes_then_restarts_on_readd() -> None:
    ladder = Ladder(min_observation=timedelta(seconds=30))
    stale = status(STALE, round_=1)
    assert run(ladder, stale, T0) == [], "first sight: kube-proxy gets its chance"
    steps = run(ladder, stale, T0 + timedelta(seconds=31))
    assert steps == [(ActionKind.FLUSH_STALE_BACKENDS, True)]
    for step in ladder.steps("n1", judged(ladder, stale), T0 + timedelta(seconds=31)):
        ladder.acted(step, T0 + timedelta(seconds=31), intent=REMOVAL)
    # The removal worked: the finding goes away.
    assert (
        run(
            ladder, status(["10.0.0.2", "10.0.0.3"], round_=3, results=removed(3)), T0 + timedelta(seconds=40)
        )
        == []
    )
    # kube-proxy re-adds it on its next sync: proof of a stale cache, restart at once.
    readd = status(STALE, round_=4, results=removed(3))
    assert run(ladder, readd, T0 + timedelta(seconds=60)) == [(ActionKind.RESTART_KUBE_PROXY, False)]
    steps_after = ladder.steps("n1", judged(ladder, readd), T0 + timedelta(seconds=60))
    assert steps_after[0].since == T0 + timedelta(seconds=31), "observed since the removal, not since now"
    assert ladder.restart_candidates({"n1": judged(ladder, readd)}, T0 + timedelta(seconds=60)) == {"n1"}


def test_a_report_sensed_before_the_removal_was_applied_is_not_a_readd() -> None:
    ladder = Ladder(min_observation=timedelta(seconds=0))
    stale = status(STALE, round_=1)
    for step in ladder.steps("n1", judged(ladder, stale), T0):
        ladder.acted(step, T0, intent=REMOVAL)
    assert REMOVAL in {removal.intent for removal in ladder.removed["n1"].values()}
    # The removal is ordered, not applied: a report without its result still lists the real server.
    before = status(STALE, round_=2)
    assert run(ladder, before, T0 + timedelta(minutes=5)) == []
    assert ladder.restart_candidates({"n1": judged(ladder, before)}, T0 + timedelta(minutes=5)) == set()
    # The round that verified the removal saw the real server gone; one sensed later sees it back.
    assert run(ladder, status(STALE, round_=3, results=removed(3)), T0 + timedelta(minutes=5)) == [], (
        "the verifying round itself is not after the removal"
    )
    assert run(ladder, status(STALE, round_=4, results=removed(3)), T0 + timedelta(minutes=5)) == [
        (ActionKind.RESTART_KUBE_PROXY, False)
    ]


def test_a_readd_needs_the_incarnation_that_verified_the_removal() -> None:
    ladder = Ladder(min_observation=timedelta(seconds=0))
    for step in ladder.steps("n1", judged(ladder, status(STALE, round_=1)), T0):
        ladder.acted(step, T0, intent=REMOVAL)
    run(ladder, status(["10.0.0.2", "10.0.0.3"], round_=9, results=removed(9)), T0)
    restarted_agent = status(STALE, round_=20).model_copy(update={"incarnation": "agent-2"})
    assert run(ladder, restarted_agent, T0 + timedelta(minutes=1)) == [], (
        "another agent's rounds are not ordered"
    )


def test_a_removal_that_did_not_happen_is_forgotten() -> None:
    ladder = Ladder(min_observation=timedelta(seconds=0))
    for step in ladder.steps("n1", judged(ladder, status(STALE, round_=1)), T0):
        ladder.acted(step, T0, intent=REMOVAL)
    dry = status(STALE, round_=2, results=removed(2, outcome="DryRun"))
    assert run(ladder, dry, T0) == [(ActionKind.FLUSH_STALE_BACKENDS, True)], "stale again, not re-added"
    assert not ladder.removed.get("n1")


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
