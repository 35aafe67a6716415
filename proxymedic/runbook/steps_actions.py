"""The last diagnosis step: what ProxyMedic did on the node, what it would do now, and what holds it."""

from __future__ import annotations

from datetime import datetime

from proxymedic.api import reasons
from proxymedic.api.health import NodeProxyHealthStatus
from proxymedic.api.reasons import Category
from proxymedic.operator.guardrails import ActionKind
from proxymedic.runbook.ages import age
from proxymedic.runbook.judge import Plan, plans, policies_for
from proxymedic.runbook.report import StepReport, Table, Verdict
from proxymedic.runbook.snapshot import View

ACTION_WORDS = {
    ActionKind.FLUSH_STALE_BACKENDS: "flush the stale connections",
    ActionKind.FLUSH_STALE_CONNTRACK: "delete the stale conntrack entries",
    ActionKind.REMOVE_STALE_REAL_SERVER: "remove the stale real server",
    ActionKind.SET_IPVS_UDP_TIMEOUT: "set the IPVS UDP timeout",
    ActionKind.ENFORCE_SYSCTLS: "set the IPVS sysctls to 1",
    ActionKind.RESTART_KUBE_PROXY: "restart kube-proxy",
    ActionKind.RAISE_CONNTRACK_MAX: "raise nf_conntrack_max",
}
SHOWN_RESULTS = 5
SHOWN_EVENTS = 5


def describe(plan: Plan) -> str:
    what = ACTION_WORDS[plan.proposal.kind]
    verdict = plan.verdict
    if not verdict.allowed:
        decision = f"held by {verdict.rule} ({verdict.message})"
    elif verdict.dry_run:
        decision = "dry-run: reported, not done"
    else:
        decision = "allowed by every guardrail"
    return f"{what}, because {plan.step.finding.message}: {decision} [policy {plan.policy}]"


def _state(plan: Plan) -> str:
    if not plan.verdict.allowed:
        return f"held by {plan.verdict.rule}"
    return "dry-run" if plan.verdict.dry_run else "allowed"


def _changes(result_removed: int, flushed: int, conntrack: int) -> str:
    parts = [
        f"{count} {label}"
        for count, label in (
            (result_removed, "rs removed"),
            (flushed, "conns flushed"),
            (conntrack, "ct deleted"),
        )
        if count
    ]
    return ", ".join(parts) or "-"


def step_proxymedic(view: View, node: str, status: NodeProxyHealthStatus, now: datetime) -> StepReport:
    manual = [
        f"kubectl get events -A --field-selector involvedObject.name={node}",
        f"kubectl get nodeproxyhealth {node} -o jsonpath='{{.status.recentResults}}'",
        "kubectl get remediationintents -o wide",
    ]
    details: list[str] = []
    facts: dict[str, object] = {}
    node_events = [e for e in view.events if e.kind == "Node" and e.name == node][:SHOWN_EVENTS]
    results = sorted(status.recent_results, key=lambda r: r.completed_at, reverse=True)[:SHOWN_RESULTS]
    rows = [
        [
            age(r.completed_at, now),
            r.intent,
            str(r.outcome),
            _changes(r.removed_real_servers, r.flushed_connections, r.deleted_conntrack_entries),
        ]
        for r in results
    ]
    for event in node_events:
        category = reasons.REASONS[event.reason].category if event.reason in reasons.REASONS else None
        verb = (
            "held"
            if category is reasons.Category.HOLD
            else "saw"
            if category is not Category.REMEDIATION
            else "did"
        )
        details.append(f"{verb} {age(event.last, now)} ago: {event.reason}: {event.message}")
    upcoming = plans(view, node, now)
    details.extend(f"would {describe(plan)}" for plan in upcoming)
    facts.update(
        events=[
            {"reason": e.reason, "lastSeen": e.last.isoformat() if e.last else None, "message": e.message}
            for e in node_events
        ],
        wouldDo=[
            {
                "action": str(p.proposal.kind),
                "policy": p.policy,
                "finding": p.step.finding.message,
                "allowed": p.verdict.allowed,
                "dryRun": p.verdict.dry_run,
                "heldBy": str(p.verdict.rule) if p.verdict.rule else None,
                "message": p.verdict.message,
            }
            for p in upcoming
        ],
    )
    if not policies_for(view, node):
        summary = "no policy selects this node: ProxyMedic only observes it"
    elif upcoming:
        summary = "would " + "; ".join(f"{ACTION_WORDS[p.proposal.kind]} ({_state(p)})" for p in upcoming)
    elif node_events and node_events[0].last is not None:
        summary = f"nothing to do now; last: {node_events[0].reason} {age(node_events[0].last, now)} ago"
    elif results:
        last = results[0]
        summary = f"nothing to do now; last intent result {age(last.completed_at, now)} ago ({last.outcome})"
    else:
        summary = "nothing to do, nothing done"
    return StepReport(
        number=8,
        key="proxymedic",
        title="What ProxyMedic did and would do",
        manual=manual,
        verdict=Verdict.INFO,
        summary=summary,
        details=details,
        table=Table(columns=["AGE", "INTENT", "OUTCOME", "CHANGES"], rows=rows) if rows else None,
        facts=facts,
    )
