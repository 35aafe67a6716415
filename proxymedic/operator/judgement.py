"""The operator's judgement of one node under one policy: pure functions, no I/O, no memory.

The operator (``repairs.NodeRepairs``) calls them with what it remembers (which reports are
evidence, how long it has held a report, which restarts it made); ``proxymedic diagnose`` calls
the same functions with what it can rebuild from a snapshot of the API. Whatever rule changes
here changes in both, so the runbook never predicts a decision the operator would not make.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from proxymedic.api.health import FindingType, Freshness, NodeProxyHealthStatus
from proxymedic.api.policy import ProxyHealthPolicy
from proxymedic.operator.drift import RESTART_WORTHY, DriftFinding
from proxymedic.operator.guardrails import ClusterView

RESTART_SETTLE = timedelta(minutes=5)
"""A restart counts as in progress until kube-proxy reports a fresh sync, or for this long."""


def conntrack_pressure(
    policy: ProxyHealthPolicy, node: str, status: NodeProxyHealthStatus
) -> DriftFinding | None:
    """The node's conntrack table fuller than the policy's threshold (90% when it sets none)."""
    if status.conntrack is None or status.conntrack.max <= 0:
        return None
    threshold = policy.spec.actions.raise_conntrack_max.threshold_percent
    used = 100 * status.conntrack.count / status.conntrack.max
    if used < threshold:
        return None
    return DriftFinding(
        node,
        FindingType.CONNTRACK_PRESSURE,
        f"conntrack table {used:.0f}% full ({status.conntrack.count} of {status.conntrack.max}, "
        f"threshold {threshold}%)",
    )


def sync_recent(policy: ProxyHealthPolicy, status: NodeProxyHealthStatus, held_for: timedelta) -> bool:
    """kube-proxy synced within the policy's ``staleAfter``.

    The agent judges staleness with its own threshold; the policy's must be exceeded too. The
    sync's age is taken when sensed (on the node's clock) plus how long the report has been held
    since (on the judge's clock): never one clock's time against the other's.
    """
    last_sync = status.kube_proxy.last_sync_time
    stale_after = policy.spec.actions.restart_kube_proxy.stale_after
    return last_sync is not None and status.observed_at - last_sync + held_for < stale_after


def policy_findings(
    policy: ProxyHealthPolicy,
    node: str,
    status: NodeProxyHealthStatus,
    detected: list[DriftFinding],
    *,
    held_for: timedelta,
    evidence: Callable[[DriftFinding], bool] | None = None,
) -> list[DriftFinding]:
    """What the policy finds on the node, from the findings ``drift.detect`` made of its report.

    ``evidence`` says whether the report is evidence for a finding (sensed after the change it
    concerns, ``causality.py``); a judge without that memory passes None and counts them all.
    Conntrack pressure is judged against the policy's threshold, not the agent's.
    """
    findings = [
        f
        for f in detected
        if f.type is not FindingType.CONNTRACK_PRESSURE and (evidence is None or evidence(f))
    ]
    pressure = conntrack_pressure(policy, node, status)
    if pressure is not None:
        findings.append(pressure)
    if sync_recent(policy, status, held_for):
        findings = [f for f in findings if f.type is not FindingType.KUBE_PROXY_SYNC_STALE]
    return findings


def looks_stale(detected: Collection[DriftFinding]) -> bool:
    """A restart-worthy finding in the report, evidence or not yet: the node may turn out stale."""
    return any(f.type in RESTART_WORTHY for f in detected)


def restart_settled(
    status: NodeProxyHealthStatus | None, synced_since: bool, started: datetime, now: datetime
) -> bool:
    """A restart is over once kube-proxy reports a fresh sync made after it, or after RESTART_SETTLE."""
    fresh = status is not None and status.kube_proxy.freshness is Freshness.FRESH
    return (fresh and synced_since) or now - started > RESTART_SETTLE


@dataclass(frozen=True)
class RestartViews:
    """The cluster as the restart guardrails see it, for one policy."""

    breaker: ClusterView
    """Nodes stale on evidence: what trips the anomaly breaker."""
    guarded: ClusterView
    """Those and the nodes that may turn out stale: what a restart is weighed against. After a
    change nodes report one by one, up to a heartbeat apart; the first stale one must not be
    restarted before the others are counted."""


def restart_views(
    selected: int, stale: Collection[str], suspects: Collection[str], in_progress: Collection[str]
) -> RestartViews:
    stale_nodes, restarting = frozenset(stale), frozenset(in_progress)
    return RestartViews(
        ClusterView(selected, stale_nodes, restarting),
        ClusterView(selected, stale_nodes | frozenset(suspects), restarting),
    )


def synced_after(status: NodeProxyHealthStatus | None, started: datetime) -> bool:
    """kube-proxy's last sync, as the agent reported it, is later than ``started``: the judgement
    of a judge that cannot tell which sensing round came after a restart (a restarted operator
    about the restarts it read back, ``proxymedic diagnose``)."""
    last_sync = status.kube_proxy.last_sync_time if status is not None else None
    return last_sync is not None and last_sync > started


def restarts_in_progress(
    restarts: Mapping[str, datetime],
    healths: Mapping[str, NodeProxyHealthStatus],
    synced_since: Callable[[str, datetime], bool],
    now: datetime,
) -> frozenset[str]:
    """The nodes whose restart is not settled yet."""
    return frozenset(
        node
        for node, started in restarts.items()
        if not restart_settled(healths.get(node), synced_since(node, started), started, now)
    )
