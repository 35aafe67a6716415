"""Diagnosis steps about the node's own settings: conntrack (overlap and pressure) and sysctl drift."""

from __future__ import annotations

from datetime import datetime

from proxymedic.api import sysctls as names
from proxymedic.api.health import FindingType, NodeProxyHealthStatus, ProxyMode
from proxymedic.api.intent import FlushStep
from proxymedic.operator.sysctl_gaps import sysctl_gap
from proxymedic.runbook.ages import age, plural
from proxymedic.runbook.judge import policies_for
from proxymedic.runbook.report import StepReport, Table, Verdict
from proxymedic.runbook.snapshot import View

EXPECTED_ONE = (names.EXPIRE_NODEST_CONN, names.EXPIRE_QUIESCENT_TEMPLATE)
SYSCTL_WHY = {
    names.EXPIRE_NODEST_CONN: "0 keeps clients on removed backends",
    names.EXPIRE_QUIESCENT_TEMPLATE: "0 keeps persistence on weight-0 servers",
    names.VS_CONNTRACK: "kube-proxy sets 1: IPVS flows also in conntrack",
    names.NF_CONNTRACK_UDP_TIMEOUT: "unreplied UDP conntrack entries (s)",
    names.NF_CONNTRACK_UDP_TIMEOUT_STREAM: "UDP conntrack entries with replies (s)",
}


def step_conntrack(view: View, node: str, status: NodeProxyHealthStatus, now: datetime) -> StepReport:
    manual = [
        "conntrack -S",
        "sysctl net.netfilter.nf_conntrack_count net.netfilter.nf_conntrack_max",
        "conntrack -L -p udp --orig-dst <VIP>",
    ]
    details: list[str] = []
    verdict = Verdict.OK
    conntrack = status.conntrack
    facts: dict[str, object] = {}
    policies = policies_for(view, node)
    threshold = min((p.spec.actions.raise_conntrack_max.threshold_percent for p in policies), default=90)
    if conntrack is None:
        verdict, summary = Verdict.UNKNOWN, "the agent could not read the conntrack table"
    else:
        percent = 100 * conntrack.count / conntrack.max if conntrack.max else 0.0
        facts.update(
            count=conntrack.count, max=conntrack.max, percent=round(percent, 1), drops=conntrack.drops
        )
        drops = f", {conntrack.drops} drops" if conntrack.drops is not None else ""
        summary = (
            f"table {percent:.0f}% full ({conntrack.count} of {conntrack.max}{drops}), threshold {threshold}%"
        )
        if percent >= threshold:
            verdict = Verdict.PROBLEM
            summary += ": new flows are dropped once it is full"
    stale = [f for f in status.findings if f.type is FindingType.STALE_CONNTRACK]
    if stale:
        verdict = Verdict.PROBLEM
        details.extend(f"stale conntrack: {f.message}" for f in stale)
    overlap = status.sysctls.get(names.VS_CONNTRACK)
    facts["vsConntrack"] = overlap
    if overlap == 1 and status.proxy_mode is ProxyMode.IPVS:
        details.append(
            "overlap: net.ipv4.vs.conntrack=1, so each IPVS flow also has an nf_conntrack entry; a stale "
            "flow lives in both tables, and deleting the conntrack entry alone leaves the IPVS entry (step 2)"
        )
    deletes = any(p.spec.actions.flush_stale_conntrack.enabled for p in policies)
    facts["policyDeletesStaleConntrack"] = deletes
    details.append(
        f"stale UDP conntrack entries of dead backends: deleted by the policy ({FlushStep.DELETE_CONNTRACK})"
        if deletes
        else "stale UDP conntrack entries of dead backends: no policy selecting this node deletes them"
    )
    deleted = [r for r in status.recent_results if r.deleted_conntrack_entries]
    if deleted:
        last = max(deleted, key=lambda r: r.completed_at)
        total = sum(r.deleted_conntrack_entries for r in deleted)
        details.append(
            f"{plural(total, 'conntrack entry', 'conntrack entries')} deleted by "
            f"{plural(len(deleted), 'intent', 'intents')}, the latest "
            f"{age(last.completed_at, now)} ago ({last.intent})"
        )
        facts["deletedEntries"] = total
    return StepReport(
        number=5,
        key="conntrack",
        title="Conntrack: overlap and pressure",
        manual=manual,
        verdict=verdict,
        summary=summary,
        details=details,
        facts=facts,
    )


def step_sysctls(view: View, node: str, status: NodeProxyHealthStatus) -> StepReport:
    manual = [
        "sysctl net.ipv4.vs.expire_nodest_conn net.ipv4.vs.expire_quiescent_template net.ipv4.vs.conntrack",
        "ipvsadm -Ln --timeout",
    ]
    ipvs = status.proxy_mode is ProxyMode.IPVS
    rows: list[list[str]] = []
    drifted: list[str] = []
    for name in (
        *EXPECTED_ONE,
        names.VS_CONNTRACK,
        names.NF_CONNTRACK_UDP_TIMEOUT,
        names.NF_CONNTRACK_UDP_TIMEOUT_STREAM,
    ):
        value = status.sysctls.get(name)
        expected = "1" if name in EXPECTED_ONE and ipvs else "-"
        if name in EXPECTED_ONE and ipvs and value == 0:
            drifted.append(f"{name}={value}")
        rows.append([name, "?" if value is None else str(value), expected, SYSCTL_WHY[name]])
    policies = policies_for(view, node)
    wanted = next(
        (
            int(p.spec.actions.ipvs_udp_timeout.timeout.total_seconds())
            for p in policies
            if p.spec.actions.ipvs_udp_timeout.enabled
        ),
        None,
    )
    udp = status.ipvs.udp_timeout_seconds if status.ipvs is not None else None
    if ipvs or udp is not None:
        rows.append(
            [
                "IPVS UDP timeout",
                "?" if udp is None else f"{udp}s",
                f"{wanted}s" if wanted is not None else "-",
                "bounds NEW entries only, never existing ones",
            ]
        )
        if wanted is not None and udp is not None and udp != wanted:
            drifted.append(f"IPVS UDP timeout={udp}s (the policy wants {wanted}s)")
    enforce = any(p.spec.actions.enforce_sysctls.enabled for p in policies)
    gap = sysctl_gap(node, status, policies)
    if drifted:
        verdict, summary = Verdict.PROBLEM, "drift: " + ", ".join(drifted)
        if gap is not None:
            summary += f"; ProxyMedic cannot set {names.EXPIRE_NODEST_CONN}"
    elif not status.sysctls:
        verdict, summary = Verdict.UNKNOWN, "the agent could not read the sysctls"
    else:
        verdict, summary = (
            Verdict.OK,
            "no drift" if ipvs else f"no IPVS sysctls to check in {status.proxy_mode} mode",
        )
    if gap is not None:  # what the operator's SysctlNotEnforced Event says, in the same words
        details = [f"cannot fix: {gap.why}", f"until it is 1, {gap.consequence}", f"fix: {gap.fix}"]
    elif enforce:
        details = ["the policy keeps the IPVS sysctls at 1"]
    else:
        details = ["no policy selecting this node sets sysctls (enforceSysctls is off)"]
    return StepReport(
        number=6,
        key="sysctls",
        title="Sysctl drift",
        manual=manual,
        verdict=verdict,
        summary=summary,
        details=details,
        table=Table(columns=["SETTING", "VALUE", "EXPECTED", "WHY IT MATTERS"], rows=rows),
        facts={
            "drift": drifted,
            "sysctls": dict(status.sysctls),
            "udpTimeoutSeconds": udp,
            "sysctlsWritable": status.sysctls_writable,
            "notEnforced": None if gap is None else {"cause": str(gap.cause), "fix": gap.fix},
        },
    )
