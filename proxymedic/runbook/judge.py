"""Judge a node the way the operator does, from a snapshot: findings, health, and what would run.

The operator keeps its history (first sightings, past actions) in memory; from outside it is
rebuilt from what the operator left behind: its Events. Past actions come from the
remediation Events (one record per occurrence, at the Event's last timestamp), restarts in
progress from ``KubeProxyRestarted`` Events not yet followed by a fresh sync.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from proxymedic.api import reasons
from proxymedic.api.health import FindingType, Freshness, NodeProxyHealthStatus
from proxymedic.api.policy import ProxyHealthPolicy
from proxymedic.operator.drift import DriftFinding, Ladder, Step, detect
from proxymedic.operator.guardrails import (
    ActionKind,
    ActionRecord,
    ClusterView,
    Proposal,
    Verdict,
    anomaly_tripped,
    evaluate,
)
from proxymedic.operator.repairs import RESTART_SETTLE
from proxymedic.operator.state import AGENT_SILENT_AFTER
from proxymedic.runbook.snapshot import EventRecord, View

RESTART_WORTHY = frozenset({FindingType.KUBE_PROXY_SYNC_STALE, FindingType.MISSING_REAL_SERVER})
RULES_DRIFT = frozenset({FindingType.STALE_REAL_SERVER, FindingType.MISSING_REAL_SERVER})

_ACTION_OF_REASON = {
    reasons.STALE_CONNECTIONS_FLUSHED: ActionKind.FLUSH_STALE_BACKENDS,
    reasons.STALE_REAL_SERVER_REMOVED: ActionKind.REMOVE_STALE_REAL_SERVER,
    reasons.UDP_TIMEOUT_SET: ActionKind.SET_IPVS_UDP_TIMEOUT,
    reasons.SYSCTLS_ENFORCED: ActionKind.ENFORCE_SYSCTLS,
    reasons.CONNTRACK_MAX_RAISED: ActionKind.RAISE_CONNTRACK_MAX,
    reasons.KUBE_PROXY_RESTARTED: ActionKind.RESTART_KUBE_PROXY,
}


class NodeHealth(enum.StrEnum):
    FRESH = "fresh"
    STALE = "stale"
    UNKNOWN = "unknown"
    SILENT = "agent silent"
    NO_AGENT = "no agent"


def policies_for(view: View, node: str) -> list[ProxyHealthPolicy]:
    """The valid policies whose node selector takes this node, by name."""
    labels = view.nodes.get(node, {})
    return [
        record.policy
        for record in view.policies
        if record.policy is not None and record.policy.spec.nodes.label_selector.matches(labels)
    ]


def policy_findings(
    view: View, policy: ProxyHealthPolicy, node: str, status: NodeProxyHealthStatus, now: datetime
) -> list[DriftFinding]:
    """What the operator finds on the node for one policy (``NodeRepairs._findings``)."""
    findings = detect(node, status, view.cluster.selected_vips(policy))
    findings = [f for f in findings if f.type is not FindingType.CONNTRACK_PRESSURE]
    if status.conntrack is not None and status.conntrack.max > 0:
        threshold = policy.spec.actions.raise_conntrack_max.threshold_percent
        used = 100 * status.conntrack.count / status.conntrack.max
        if used >= threshold:
            findings.append(
                DriftFinding(
                    node,
                    FindingType.CONNTRACK_PRESSURE,
                    f"conntrack table {used:.0f}% full ({status.conntrack.count} of {status.conntrack.max}, "
                    f"threshold {threshold}%)",
                )
            )
    stale_after = policy.spec.actions.restart_kube_proxy.stale_after
    last_sync = status.kube_proxy.last_sync_time
    recent = last_sync is not None and now - last_sync < stale_after
    return [f for f in findings if not (f.type is FindingType.KUBE_PROXY_SYNC_STALE and recent)]


def findings_of(view: View, node: str, now: datetime) -> list[DriftFinding]:
    """The node's findings under every policy that selects it (each once); the agent's own without one."""
    status = view.healths.get(node)
    if status is None:
        return []
    policies = policies_for(view, node)
    if not policies:
        return detect(node, status, {})
    seen: dict[tuple[str, str, str, str], DriftFinding] = {}
    for policy in policies:
        for finding in policy_findings(view, policy, node, status, now):
            seen.setdefault(finding.key, finding)
    return list(seen.values())


def silent(status: NodeProxyHealthStatus, now: datetime) -> bool:
    return now - status.observed_at >= AGENT_SILENT_AFTER


@dataclass(frozen=True)
class HealthVerdict:
    health: NodeHealth
    reason: str


def health_of(view: View, node: str, now: datetime) -> HealthVerdict:
    """Fresh, stale or unknown kube-proxy; or an agent that is silent or absent.

    Stale covers a sync the agent calls stale and rules that disagree with the EndpointSlices:
    a kube-proxy whose watch died syncs on time and answers healthz while its rules drift.
    """
    status = view.healths.get(node)
    if status is None:
        why = view.invalid_reports.get(node, "no NodeProxyHealth for this node")
        return HealthVerdict(NodeHealth.NO_AGENT, why)
    if silent(status, now):
        return HealthVerdict(NodeHealth.SILENT, f"no report for {AGENT_SILENT_AFTER.seconds // 60}m or more")
    findings = findings_of(view, node, now)
    drift = [f for f in findings if f.type in RULES_DRIFT]
    if status.kube_proxy.freshness is Freshness.STALE:
        return HealthVerdict(NodeHealth.STALE, status.kube_proxy.reason or "kube-proxy sync is stale")
    if drift:
        return HealthVerdict(NodeHealth.STALE, f"rules disagree with EndpointSlices: {drift[0].message}")
    if status.kube_proxy.freshness is Freshness.UNKNOWN:
        return HealthVerdict(NodeHealth.UNKNOWN, status.kube_proxy.reason or "kube-proxy could not be read")
    return HealthVerdict(NodeHealth.FRESH, status.kube_proxy.reason)


def history(events: Iterable[EventRecord]) -> list[ActionRecord]:
    """The actions that ran, from the operator's remediation Events (what budgets and cooldowns count)."""
    records: list[ActionRecord] = []
    for event in events:
        kind = _ACTION_OF_REASON.get(event.reason)
        if kind is None or event.last is None:
            continue
        node = event.name if event.kind == "Node" else None
        records.extend(ActionRecord(kind, event.last, node) for _ in range(max(1, event.count)))
    return records


def restarts_in_progress(view: View, now: datetime) -> frozenset[str]:
    """Nodes restarted less than five minutes ago whose kube-proxy has not reported a fresh sync since."""
    nodes = set()
    for event in view.events:
        if event.reason != reasons.KUBE_PROXY_RESTARTED or event.kind != "Node" or event.last is None:
            continue
        status = view.healths.get(event.name)
        synced = (
            status is not None
            and status.kube_proxy.freshness is Freshness.FRESH
            and status.kube_proxy.last_sync_time is not None
            and status.kube_proxy.last_sync_time > event.last
        )
        if not synced and now - event.last <= RESTART_SETTLE:
            nodes.add(event.name)
    return frozenset(nodes)


def cluster_view(view: View, policy: ProxyHealthPolicy, now: datetime) -> ClusterView:
    selected = view.cluster.selected_nodes(policy, now)
    stale = frozenset(
        node
        for node in selected
        if (status := view.healths.get(node)) is not None
        and any(f.type in RESTART_WORTHY for f in policy_findings(view, policy, node, status, now))
    )
    return ClusterView(len(selected), stale, restarts_in_progress(view, now))


@dataclass(frozen=True)
class Plan:
    """One step the operator's ladder takes for a finding, and what the guardrails say to it."""

    policy: str
    step: Step
    proposal: Proposal
    verdict: Verdict


def plans(view: View, node: str, now: datetime) -> list[Plan]:
    """What each policy that selects the node would do about its findings now, and what holds it.

    Unknown to an outside observer: how long the operator has seen each finding. Findings the
    agent reports carry their first sighting; the others count as seen long enough, so a step
    shown as allowed may still wait for the policy's minObservation.
    """
    status = view.healths.get(node)
    if status is None:
        return []
    result: list[Plan] = []
    past = history(view.events)
    for policy in policies_for(view, node):
        findings = policy_findings(view, policy, node, status, now)
        reported = {(f.type, f.message): f.since for f in status.findings}
        ladder = Ladder(min_observation=timedelta(0))
        ladder.observe(node, findings, now)
        for step in ladder.steps(node, findings, now):
            kind = ActionKind.REMOVE_STALE_REAL_SERVER if step.remove_real_servers else step.kind
            since = reported.get((step.finding.type, step.finding.message))
            proposal = Proposal(kind, node, since)
            verdict = evaluate(policy, proposal, past, cluster_view(view, policy, now), now)
            result.append(Plan(policy.metadata.name, step, proposal, verdict))
    return result


def breaker_tripped(view: View, policy: ProxyHealthPolicy, now: datetime) -> bool:
    return anomaly_tripped(policy, cluster_view(view, policy, now))


def latest(events: Sequence[EventRecord], reason: str, node: str) -> EventRecord | None:
    """The newest Event with this reason about this node (the events are newest first)."""
    return next((e for e in events if e.reason == reason and e.kind == "Node" and e.name == node), None)
