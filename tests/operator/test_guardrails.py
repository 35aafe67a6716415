"""Guardrails as a table: each rule holds exactly when it should, and names itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from proxymedic.api.policy import ProxyHealthPolicy
from proxymedic.operator.guardrails import (
    ActionKind,
    ActionRecord,
    ClusterView,
    HoldRule,
    Proposal,
    anomaly_tripped,
    evaluate,
    in_window,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday, 10:00 UTC
ALL_ON = {
    name: {"enabled": True}
    for name in (
        "flushStaleConnections",
        "removeStaleRealServers",
        "restartKubeProxy",
        "ipvsUDPTimeout",
        "enforceSysctls",
        "flushStaleConntrack",
    )
} | {"raiseConntrackMax": {"enabled": True, "ceiling": 1 << 20}}


def make_policy(
    guardrails: dict[str, Any] | None = None,
    actions: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
) -> ProxyHealthPolicy:
    return ProxyHealthPolicy.model_validate(
        {
            "metadata": {"name": "p", "annotations": annotations or {}},
            "spec": {"actions": ALL_ON if actions is None else actions, "guardrails": guardrails or {}},
        }
    )


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


@dataclass
class Case:
    id: str
    proposal: Proposal
    rule: HoldRule | None
    policy: ProxyHealthPolicy = field(default_factory=make_policy)
    history: list[ActionRecord] = field(default_factory=list)
    cluster: ClusterView = field(default_factory=lambda: ClusterView(selected_nodes=10))
    dry_run: bool = False


RESTART = ActionKind.RESTART_KUBE_PROXY
FLUSH = ActionKind.FLUSH_STALE_BACKENDS
TIMEOUT = ActionKind.SET_IPVS_UDP_TIMEOUT
OBSERVED = ago(minutes=2)

CASES = [
    Case("flush-allowed", Proposal(FLUSH), None),
    Case("restart-allowed", Proposal(RESTART, "n1", OBSERVED), None),
    Case("dry-run-allows-as-dry-run", Proposal(FLUSH), None, make_policy({"dryRun": True}), dry_run=True),
    Case("paused-by-spec", Proposal(FLUSH), HoldRule.PAUSED, make_policy({"paused": True})),
    Case(
        "paused-by-annotation",
        Proposal(FLUSH),
        HoldRule.PAUSED,
        make_policy(annotations={"proxymedic.io/paused": "true"}),
    ),
    Case(
        "pause-beats-dry-run", Proposal(FLUSH), HoldRule.PAUSED, make_policy({"paused": True, "dryRun": True})
    ),
    Case("action-disabled-by-default", Proposal(FLUSH), HoldRule.ACTION_DISABLED, make_policy(actions={})),
    Case(
        "restart-outside-window",
        Proposal(RESTART, "n1", OBSERVED),
        HoldRule.OUTSIDE_MAINTENANCE_WINDOW,
        make_policy({"maintenanceWindows": [{"start": "22:00", "end": "02:00"}]}),
    ),
    Case(
        "restart-inside-window",
        Proposal(RESTART, "n1", OBSERVED),
        None,
        make_policy({"maintenanceWindows": [{"start": "09:00", "end": "11:00", "days": ["Mon"]}]}),
    ),
    Case(
        "flush-ignores-window",
        Proposal(FLUSH),
        None,
        make_policy({"maintenanceWindows": [{"start": "22:00", "end": "02:00"}]}),
    ),
    Case(
        "restart-before-min-observation", Proposal(RESTART, "n1", ago(seconds=10)), HoldRule.MIN_OBSERVATION
    ),
    Case("restart-at-min-observation", Proposal(RESTART, "n1", ago(seconds=30)), None),
    Case(
        "tuning-in-cooldown",
        Proposal(TIMEOUT, "n1"),
        HoldRule.NODE_COOLDOWN,
        history=[ActionRecord(TIMEOUT, ago(minutes=1), "n1")],
    ),
    Case(
        "tuning-after-cooldown",
        Proposal(TIMEOUT, "n1"),
        None,
        history=[ActionRecord(TIMEOUT, ago(minutes=6), "n1")],
    ),
    Case(
        "cooldown-is-per-node",
        Proposal(TIMEOUT, "n2"),
        None,
        history=[ActionRecord(TIMEOUT, ago(minutes=1), "n1")],
    ),
    Case(
        # Each kind of action has its own cooldown: a sysctl fix never delays the restart a
        # stalled kube-proxy needs, nor a restart the sysctl fix.
        "cooldown-is-per-kind",
        Proposal(TIMEOUT, "n1"),
        None,
        history=[ActionRecord(ActionKind.ENFORCE_SYSCTLS, ago(minutes=1), "n1")],
    ),
    Case(
        "restart-ignores-a-sysctl-fix",
        Proposal(RESTART, "n1", OBSERVED),
        None,
        history=[ActionRecord(ActionKind.ENFORCE_SYSCTLS, ago(seconds=5), "n1")],
    ),
    Case(
        "sysctl-fix-ignores-a-restart",
        Proposal(ActionKind.ENFORCE_SYSCTLS, "n1"),
        None,
        history=[ActionRecord(RESTART, ago(seconds=5), "n1")],
    ),
    Case(
        "restart-in-cooldown-of-a-restart",
        Proposal(RESTART, "n1", OBSERVED),
        HoldRule.NODE_COOLDOWN,
        history=[ActionRecord(RESTART, ago(minutes=1), "n1")],
    ),
    Case(
        "restart-right-after-rs-removal",
        Proposal(RESTART, "n1", OBSERVED),
        None,
        history=[ActionRecord(ActionKind.REMOVE_STALE_REAL_SERVER, ago(seconds=40), "n1")],
    ),
    Case(
        "flush-ignores-node-cooldown",
        Proposal(FLUSH),
        None,
        history=[ActionRecord(RESTART, ago(seconds=5), "n1")],
    ),
    Case(
        "node-budget-spent",
        Proposal(TIMEOUT, "n1"),
        HoldRule.NODE_BUDGET,
        make_policy({"nodeCooldown": "0s", "hourlyBudget": {"perNode": 2, "perCluster": 100}}),
        history=[ActionRecord(TIMEOUT, ago(minutes=50), "n1"), ActionRecord(TIMEOUT, ago(minutes=10), "n1")],
    ),
    Case(
        "node-budget-slides",
        Proposal(TIMEOUT, "n1"),
        None,
        make_policy({"nodeCooldown": "0s", "hourlyBudget": {"perNode": 2, "perCluster": 100}}),
        history=[ActionRecord(TIMEOUT, ago(minutes=61), "n1"), ActionRecord(TIMEOUT, ago(minutes=10), "n1")],
    ),
    Case(
        "cluster-budget-spent",
        Proposal(FLUSH),
        HoldRule.CLUSTER_BUDGET,
        make_policy({"hourlyBudget": {"perNode": 1, "perCluster": 3}}),
        history=[ActionRecord(FLUSH, ago(minutes=m)) for m in (5, 15, 25)],
    ),
    Case(
        # A rollout's many flushes never spend the budget a restart needs.
        "restart-budget-is-not-spent-by-flushes",
        Proposal(RESTART, "n1", OBSERVED),
        None,
        make_policy({"hourlyBudget": {"perNode": 1, "perCluster": 3}}),
        history=[ActionRecord(FLUSH, ago(minutes=m)) for m in (5, 15, 25)],
    ),
    Case(
        "flush-budget-is-not-spent-by-restarts",
        Proposal(FLUSH),
        None,
        make_policy({"nodeCooldown": "0s", "hourlyBudget": {"perNode": 3, "perCluster": 3}}),
        history=[ActionRecord(RESTART, ago(minutes=m), f"n{m}") for m in (5, 15, 25)],
    ),
    Case(
        "max-concurrent-count",
        Proposal(RESTART, "n3", OBSERVED),
        HoldRule.MAX_CONCURRENT_RESTARTS,
        cluster=ClusterView(10, restarts_in_progress=frozenset({"n1"})),
    ),
    Case(
        "max-concurrent-percent",
        Proposal(RESTART, "n3", OBSERVED),
        None,
        make_policy({"maxConcurrentKubeProxyRestarts": "20%"}),
        cluster=ClusterView(10, restarts_in_progress=frozenset({"n1"})),
    ),
    Case(
        "max-concurrent-percent-full",
        Proposal(RESTART, "n3", OBSERVED),
        HoldRule.MAX_CONCURRENT_RESTARTS,
        make_policy({"maxConcurrentKubeProxyRestarts": "20%"}),
        cluster=ClusterView(10, restarts_in_progress=frozenset({"n1", "n2"})),
    ),
    Case(
        # A real kube-proxy slower to sync than the node cooldown was restarted once per cooldown.
        "own-restart-in-progress-holds-whatever-the-cooldown",
        Proposal(RESTART, "n1", OBSERVED),
        HoldRule.RESTART_IN_PROGRESS,
        make_policy({"nodeCooldown": "0s"}),
        cluster=ClusterView(10, restarts_in_progress=frozenset({"n1"})),
    ),
    Case(
        "anomaly-breaker",
        Proposal(RESTART, "n1", OBSERVED),
        HoldRule.ANOMALY_BREAKER,
        cluster=ClusterView(10, stale_nodes=frozenset({"n1", "n2", "n3", "n4"})),
    ),
    Case(
        "below-anomaly-threshold",
        Proposal(RESTART, "n1", OBSERVED),
        None,
        cluster=ClusterView(10, stale_nodes=frozenset({"n1", "n2", "n3"})),
    ),
    Case(
        "small-cluster-floor",
        Proposal(RESTART, "n1", OBSERVED),
        None,
        cluster=ClusterView(3, stale_nodes=frozenset({"n1"})),
    ),
    Case(
        "breaker-leaves-flushes-alone",
        Proposal(FLUSH),
        None,
        cluster=ClusterView(10, stale_nodes=frozenset({f"n{i}" for i in range(8)})),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_guardrail_table(case: Case) -> None:
    verdict = evaluate(case.policy, case.proposal, case.history, case.cluster, NOW)
    assert verdict.rule == case.rule, verdict.message
    assert verdict.allowed == (case.rule is None)
    assert verdict.dry_run == case.dry_run
    if case.rule is not None:
        assert verdict.message, "every hold explains itself"


def test_a_restart_by_another_policy_counts_for_the_node_not_for_the_cluster_budget() -> None:
    """Two policies selecting one node do not restart its kube-proxy back to back."""
    spec = make_policy({"hourlyBudget": {"perNode": 1, "perCluster": 1}})
    theirs = [ActionRecord(RESTART, ago(minutes=1), "n1")]
    view = ClusterView(10)
    held = evaluate(spec, Proposal(RESTART, "n1", OBSERVED), [], view, NOW, other_policies=theirs)
    assert held.rule is HoldRule.NODE_COOLDOWN
    assert "the previous one ran 1m ago" in held.message
    elsewhere = evaluate(spec, Proposal(RESTART, "n2", OBSERVED), [], view, NOW, other_policies=theirs)
    assert elsewhere.allowed


@pytest.mark.parametrize(
    ("window", "moment", "inside"),
    [
        (
            {"start": "22:00", "end": "02:00", "days": ["Mon"]},
            datetime(2026, 11, 23, 23, 0, tzinfo=UTC),
            True,
        ),
        (
            {"start": "22:00", "end": "02:00", "days": ["Mon"]},
            datetime(2026, 11, 24, 1, 59, tzinfo=UTC),
            True,
        ),
        (
            {"start": "22:00", "end": "02:00", "days": ["Mon"]},
            datetime(2026, 11, 24, 2, 0, tzinfo=UTC),
            False,
        ),
        (
            {"start": "22:00", "end": "02:00", "days": ["Mon"]},
            datetime(2026, 11, 23, 1, 0, tzinfo=UTC),
            False,
        ),
        ({"start": "09:00", "end": "17:00", "days": ["Sat", "Sun"]}, NOW, False),
        ({"start": "09:00", "end": "11:00", "timeZone": "America/New_York"}, NOW, False),
        ({"start": "04:00", "end": "06:00", "timeZone": "America/New_York"}, NOW, True),
    ],
    ids=[
        "late-evening",
        "after-midnight",
        "end-exclusive",
        "wrong-day-morning",
        "weekend-only",
        "tz-ny-no",
        "tz-ny-yes",
    ],
)
def test_maintenance_windows(window: dict[str, Any], moment: datetime, inside: bool) -> None:
    policy = make_policy({"maintenanceWindows": [window]})
    assert in_window(policy.spec.guardrails.maintenance_windows[0], moment) is inside


def test_anomaly_breaker_names_the_share() -> None:
    policy = make_policy()
    cluster = ClusterView(10, stale_nodes=frozenset({"a", "b", "c", "d", "e"}))
    assert anomaly_tripped(policy, cluster)
    verdict = evaluate(policy, Proposal(RESTART, "a", OBSERVED), [], cluster, NOW)
    assert "5 of 10 nodes" in verdict.message
    assert "threshold 30%" in verdict.message
