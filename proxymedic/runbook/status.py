"""``proxymedic status``: policies, nodes by health, open intents, recent remediations and holds (pure)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from proxymedic.api import reasons
from proxymedic.api.reasons import REASONS, Category
from proxymedic.runbook.judge import NodeHealth, findings_of, health_of, silent
from proxymedic.runbook.report import EventRow, IntentRow, NodeRow, PolicyRow, StatusReport
from proxymedic.runbook.snapshot import PolicyRecord, View

SHOWN_CATEGORIES = frozenset({Category.REMEDIATION, Category.HOLD})
DEFAULT_EVENT_LIMIT = 10
SYSCTL_CONDITION = reasons.SYSCTL_NOT_ENFORCED


def _condition(record: PolicyRecord, kind: str) -> tuple[str, str, str] | None:
    for condition in record.raw_status.get("conditions") or []:
        if condition.get("type") == kind:
            return (
                str(condition.get("status")),
                str(condition.get("reason", "")),
                str(condition.get("message", "")),
            )
    return None


def policy_state(record: PolicyRecord) -> tuple[str, str]:
    """The policy's state in a word, and why, from its conditions (as the operator wrote them)."""
    if record.policy is None:
        return "Invalid", "; ".join(record.errors)
    accepted = _condition(record, "Accepted")
    if accepted is None:
        return "Pending", "no operator has reported on this policy yet"
    if accepted[0] == "False":
        return "Invalid", accepted[2]
    degraded = _condition(record, "Degraded")
    if degraded is not None and degraded[0] == "True":
        return "Degraded", f"{degraded[1]}: {degraded[2]}"
    if record.policy.paused:
        return "Paused", "nothing is decided"
    active = _condition(record, "Active")
    if active is not None and active[0] == "False":
        return "Observing", active[2]
    if record.policy.spec.guardrails.dry_run:
        return "Active (dry-run)", "decisions are reported, nothing changes"
    return "Active", ""


def _policy_row(record: PolicyRecord) -> PolicyRow:
    state, detail = policy_state(record)
    gap = _condition(record, SYSCTL_CONDITION)
    if gap is not None and gap[0] == "True":  # a drift the policy can only watch: where to read more
        where = gap[2].split(": ", 1)[0]  # the message starts with what and where, then why and the fix
        said = f"{SYSCTL_CONDITION}: {where} (proxymedic diagnose NODE says why and what fixes it)"
        detail = "; ".join(part for part in (detail, said) if part)
    status = record.status
    if status is None:
        return PolicyRow(name=record.name, state=state, detail=detail)
    last = status.last_remediation
    return PolicyRow(
        name=record.name,
        state=state,
        detail=detail,
        selected_services=status.selected_services,
        selected_nodes=status.selected_nodes,
        intents_issued=status.counters.intents_issued,
        actions_applied=status.counters.actions_applied,
        actions_held=status.counters.actions_held,
        kube_proxy_restarts=status.counters.kube_proxy_restarts,
        last_remediation_time=last.time if last else None,
        last_remediation=f"{last.action} {last.target}" if last else "",
    )


def _node_row(view: View, node: str, now: datetime) -> NodeRow:
    verdict = health_of(view, node, now)
    status = view.healths.get(node)
    if status is None:
        return NodeRow(name=node, health=verdict.health, reason=verdict.reason)
    counts = (
        Counter(str(f.type) for f in findings_of(view, node, now)) if not silent(status, now) else Counter()
    )
    conntrack = status.conntrack
    percent = round(100 * conntrack.count / conntrack.max, 1) if conntrack and conntrack.max else None
    return NodeRow(
        name=node,
        health=verdict.health,
        reason=verdict.reason,
        proxy_mode=str(status.proxy_mode),
        sync=str(status.kube_proxy.freshness),
        healthz=str(status.kube_proxy.healthz),
        findings=[f"{kind} x{count}" if count > 1 else kind for kind, count in sorted(counts.items())],
        conntrack_percent=percent,
        observed_at=status.observed_at,
    )


def build_status(view: View, now: datetime, event_limit: int = DEFAULT_EVENT_LIMIT) -> StatusReport:
    names = sorted(set(view.nodes) | set(view.healths) | set(view.invalid_reports))
    nodes = [_node_row(view, node, now) for node in names]
    counts = {str(health): sum(1 for row in nodes if row.health == health) for health in NodeHealth}
    open_intents = [
        IntentRow(
            name=intent.metadata.name,
            action=str(intent.spec.action),
            target=(
                f"service/{intent.spec.service.namespace}/{intent.spec.service.name}"
                if intent.spec.service is not None
                else ",".join(intent.spec.node_names) or "all nodes"
            ),
            dry_run=intent.spec.dry_run,
            decided_at=intent.spec.decided_at,
            target_nodes=intent.status.target_nodes if intent.status else None,
            reported_nodes=intent.status.reported_nodes if intent.status else None,
        )
        for intent in sorted(view.intents, key=lambda i: (i.spec.decided_at, i.metadata.name), reverse=True)
        if intent.status is None or intent.status.completed_at is None
    ]
    events = [
        EventRow(
            namespace=e.namespace,
            last_seen=e.last,
            type=e.type,
            reason=e.reason,
            object=e.object,
            count=e.count,
            message=e.message,
        )
        for e in view.events
        if (entry := REASONS.get(e.reason)) is not None and entry.category in SHOWN_CATEGORIES
    ][:event_limit]
    return StatusReport(
        generated_at=now,
        policies=[_policy_row(record) for record in view.policies],
        nodes=nodes,
        node_counts=counts,
        open_intents=open_intents,
        events=events,
    )
