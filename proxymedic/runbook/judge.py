"""Judge a node the way the operator does, from a snapshot: findings, health, and what would run.

Every rule is the operator's own (``operator/judgement.py``, ``drift.py``, ``guardrails.py``);
this module only supplies what the operator would remember, rebuilt from what it left behind.
Past restarts and restarts in progress come from the restart record on its Events, read by the
function a restarted operator reads them with (``operator/record.py``): what ``diagnose``
predicts is the decision of an operator that has just restored its memory. A long-running
operator also remembers the tuning actions it took (sysctls, UDP timeout), which no record
keeps: their cooldowns are not predicted.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from proxymedic.api.health import FindingType, Freshness, NodeProxyHealthStatus
from proxymedic.api.policy import ProxyHealthPolicy
from proxymedic.operator import judgement
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
from proxymedic.operator.record import restart_history
from proxymedic.operator.state import AGENT_SILENT_AFTER
from proxymedic.runbook.snapshot import OPERATOR_COMPONENT, EventRecord, View

RULES_DRIFT = frozenset(
    {FindingType.STALE_REAL_SERVER, FindingType.STALE_RULE, FindingType.MISSING_REAL_SERVER}
)


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
    """What the operator finds on the node for one policy. Every report counts as evidence, and
    it is taken as held since the agent sensed it."""
    detected = detect(node, status, view.cluster.selected_vips(policy))
    return judgement.policy_findings(policy, node, status, detected, held_for=now - status.observed_at)


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


def restarts(view: View, now: datetime) -> dict[str, list[ActionRecord]]:
    """Policy name → its kube-proxy restarts of the last hour, as a restarted operator reads them."""
    return restart_history(view.raw_events, OPERATOR_COMPONENT, now)


def restarts_in_progress(view: View, now: datetime) -> frozenset[str]:
    """Nodes restarted less than five minutes ago whose kube-proxy has not reported a sync since."""
    latest: dict[str, datetime] = {}
    for record in (r for records in restarts(view, now).values() for r in records):
        if record.node is not None:
            latest[record.node] = max(record.at, latest.get(record.node, record.at))
    return judgement.restarts_in_progress(
        latest, view.healths, lambda node, at: judgement.synced_after(view.healths.get(node), at), now
    )


def restart_views(view: View, policy: ProxyHealthPolicy, now: datetime) -> judgement.RestartViews:
    selected = view.cluster.selected_nodes(policy, now)
    stale: set[str] = set()
    suspects: set[str] = set()
    for node in selected:
        status = view.healths.get(node)
        if status is None:
            continue
        detected = detect(node, status, view.cluster.selected_vips(policy))
        if judgement.looks_stale(detected):
            suspects.add(node)
        held_for = now - status.observed_at
        if judgement.looks_stale(
            judgement.policy_findings(policy, node, status, detected, held_for=held_for)
        ):
            stale.add(node)
    return judgement.restart_views(len(selected), stale, suspects, restarts_in_progress(view, now))


def cluster_view(view: View, policy: ProxyHealthPolicy, now: datetime) -> ClusterView:
    """What a restart on one of the policy's nodes is weighed against."""
    return restart_views(view, policy, now).guarded


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
    past = restarts(view, now)
    for policy in policies_for(view, node):
        name = policy.metadata.name
        guarded = cluster_view(view, policy, now)
        findings = policy_findings(view, policy, node, status, now)
        reported = {(f.type, f.message): f.since for f in status.findings}
        ladder = Ladder(min_observation=timedelta(0))
        ladder.observe(node, findings, now)
        for step in ladder.steps(node, findings, now):
            kind = ActionKind.REMOVE_STALE_REAL_SERVER if step.remove_real_servers else step.kind
            since = reported.get((step.finding.type, step.finding.message))
            proposal = Proposal(kind, node, since)
            own = past.setdefault(name, [])
            others = [r for other, records in past.items() if other != name for r in records]
            verdict = evaluate(policy, proposal, own, guarded, now, other_policies=others)
            result.append(Plan(name, step, proposal, verdict))
            if verdict.allowed and not verdict.dry_run:
                # The operator takes the steps one after the other: each counts against the next.
                own.append(ActionRecord(kind, now, node))
    return result


def breaker_tripped(view: View, policy: ProxyHealthPolicy, now: datetime) -> bool:
    return anomaly_tripped(policy, restart_views(view, policy, now).breaker)


def latest(events: Sequence[EventRecord], reason: str, node: str) -> EventRecord | None:
    """The newest Event with this reason about this node (the events are newest first)."""
    return next((e for e in events if e.reason == reason and e.kind == "Node" and e.name == node), None)
