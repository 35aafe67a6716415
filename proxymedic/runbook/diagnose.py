"""``proxymedic diagnose NODE``: the steps of the manual runbook, answered from a snapshot (pure).

Each step names the commands an engineer would run on the node or with kubectl, and answers
them from the node's NodeProxyHealth, the EndpointSlices of the Services the policies select,
the other nodes' reports, and the operator's Events.
"""

from __future__ import annotations

import difflib
import re
from datetime import datetime

from proxymedic.api.health import Freshness, NodeProxyHealthStatus, ProxyMode
from proxymedic.api.policy import Guardrails
from proxymedic.operator.drift import RESTART_WORTHY, RULE_MODES, DriftFinding, SelectedVip, VipKey
from proxymedic.runbook import steps_local
from proxymedic.runbook.ages import age, plural
from proxymedic.runbook.errors import NoAgentError, UnknownNodeError
from proxymedic.runbook.judge import (
    breaker_tripped,
    findings_of,
    health_of,
    policies_for,
    silent,
)
from proxymedic.runbook.report import Diagnosis, Scope, StepReport, Table, Verdict
from proxymedic.runbook.snapshot import View
from proxymedic.runbook.steps_actions import step_proxymedic


def _kernel(version: str) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else None


def selected_vips(view: View, node: str, mode: ProxyMode = ProxyMode.IPVS) -> dict[VipKey, SelectedVip]:
    """What kube-proxy should have programmed on the node, in the mode it reports (IPVS's when unknown)."""
    result: dict[VipKey, SelectedVip] = {}
    expected_mode = mode if mode in RULE_MODES else ProxyMode.IPVS
    for policy in policies_for(view, node):
        for key, selected in view.cluster.selected_vips(policy).on(node, expected_mode).items():
            result.setdefault(key, selected)
    return result


def step_mode(status: NodeProxyHealthStatus, node: str) -> StepReport:
    manual = ["curl -s http://127.0.0.1:10249/proxyMode", "uname -r"]
    kernel = status.kernel_version or "unknown"
    facts = {"proxyMode": str(status.proxy_mode), "kernelVersion": status.kernel_version}
    details: list[str] = []
    if status.proxy_mode is ProxyMode.UNKNOWN:
        return StepReport(
            number=1,
            key="proxy-mode",
            title="Proxy mode",
            manual=manual,
            verdict=Verdict.UNKNOWN,
            summary="kube-proxy's /proxyMode could not be read",
            details=[status.kube_proxy.reason] if status.kube_proxy.reason else [],
            facts=facts,
        )
    if status.proxy_mode is ProxyMode.IPVS:
        summary = f"ipvs, kernel {kernel}: every step applies"
        version = _kernel(status.kernel_version)
        if version is not None and version < (5, 9):
            details.append(
                f"kernel {kernel} is older than 5.9: it does not flush the connections of a removed real "
                "server, so the first packet on a stale entry is dropped whatever is done"
            )
    elif status.proxy_mode in RULE_MODES:
        mode = status.proxy_mode
        summary = (
            f"{mode}, kernel {kernel}: no IPVS; the agent reads kube-proxy's {mode} rules, and step 4 "
            "compares the endpoints they send traffic to; ProxyMedic never edits them, so a stale rule "
            "is cured by restarting kube-proxy"
        )
        details.append(
            f"to compare by hand, on the node: `proxymedic programmed {node} --mode {mode}` with "
            f"`proxymedic expect {node} --mode {mode}`"
        )
    else:
        summary = (
            f"{status.proxy_mode}, kernel {kernel}: no IPVS, so steps 2 and 4 do not apply; "
            "stale conntrack entries and sync stalls still do"
        )
    return StepReport(
        number=1,
        key="proxy-mode",
        title="Proxy mode",
        manual=manual,
        verdict=Verdict.INFO,
        summary=summary,
        details=details,
        facts=facts,
    )


def step_stuck_connections(status: NodeProxyHealthStatus, selected: dict[VipKey, SelectedVip]) -> StepReport:
    rules = status.proxy_mode in RULE_MODES
    manual = [
        "conntrack -L -p udp --orig-dst <VIP> --orig-port-dst <port>"
        if rules
        else "ipvsadm -Lcn | grep <VIP>:<port>",
        "kubectl get endpointslices -A -l kubernetes.io/service-name",
    ]
    rows: list[list[str]] = []
    unselected = 0
    for vs in status.virtual_servers:
        sel = selected.get((vs.vip, vs.port, str(vs.protocol)))
        if sel is None:
            unselected += sum(o.connections for o in vs.orphaned_connections)
            continue
        where = f"{vs.vip}:{vs.port}/{vs.protocol}"
        wanted = sel.wanted(vs.vip)
        for rs in vs.real_servers:
            if rs.ip not in sel.live and rs.ip not in wanted and rs.connections:
                state = "a rule still sends traffic there" if rules else "its real server is still there"
                rows.append([str(sel.service), where, rs.ip, str(rs.connections), state])
        for orphan in vs.orphaned_connections:
            if orphan.ip not in sel.live and orphan.ip not in wanted and orphan.connections:
                state = "no rule left" if rules else "no real server left"
                rows.append([str(sel.service), where, orphan.ip, str(orphan.connections), state])
    stuck = sum(int(row[3]) for row in rows)
    facts = {"stuckConnections": stuck, "unselectedOrphanedConnections": unselected}
    details = []
    if unselected:
        details.append(
            f"{unselected} more entries point at former real servers of Services no policy selects"
        )
    if status.virtual_servers_truncated:
        details.append("the agent reported only the first virtual servers (truncated): the check is partial")
    if status.proxy_mode is not ProxyMode.IPVS and not rules and not status.virtual_servers:
        verdict, summary = Verdict.NOT_APPLICABLE, f"no IPVS connection table in {status.proxy_mode} mode"
    elif rows:
        verdict = Verdict.PROBLEM
        summary = plural(stuck, "connection entry still points", "connection entries still point")
        summary += " at backends that left their Service"
        details.append(
            "clients on these conntrack entries time out until the entry expires (nf_conntrack_udp_timeout"
            "_stream, 120 s by default), forever while they keep sending"
            if rules
            else "clients on these entries time out until the entry expires (300 s for UDP by default, "
            "forever while they keep retrying with net.ipv4.vs.expire_nodest_conn=0)"
        )
    else:
        verdict, summary = Verdict.OK, "no connection entry points at a backend that left its Service"
    table = (
        Table(columns=["SERVICE", "VIRTUAL SERVER", "BACKEND", "ENTRIES", "STATE"], rows=rows)
        if rows
        else None
    )
    return StepReport(
        number=2,
        key="stuck-connections",
        title="Connections stuck to terminated backends",
        manual=manual,
        verdict=verdict,
        summary=summary,
        details=details,
        table=table,
        facts=facts,
    )


HEALTHZ_NOT_ENOUGH = (
    "healthz is not enough: it turns 503 only once queued work has waited 2 x syncPeriod; a kube-proxy "
    "whose watch died queues nothing, keeps resyncing its stale cache on time and answers 200, so only "
    "its rules compared with the EndpointSlices (step 4) show it"
)


def step_sync(status: NodeProxyHealthStatus, findings: list[DriftFinding], now: datetime) -> StepReport:
    kube_proxy = status.kube_proxy
    manual = [
        "curl -s http://127.0.0.1:10249/metrics | grep -E 'sync_proxy_rules_(last|[a-z]+_changes)'",
        "curl -s http://127.0.0.1:10256/healthz",
    ]
    details = [
        f"last sync {age(kube_proxy.last_sync_time, now)} ago, last change queued "
        f"{age(kube_proxy.last_queued_time, now)} ago; healthz {kube_proxy.healthz}",
    ]
    if kube_proxy.endpoint_changes_total is not None:
        details.append(
            f"kube-proxy has counted {kube_proxy.endpoint_changes_total} EndpointSlice events since it "
            f"started{'' if kube_proxy.started_at is None else f' {age(kube_proxy.started_at, now)} ago'}: "
            "a count that stays flat across EndpointSlice changes other nodes count means a dead watch"
        )
    if kube_proxy.reason and kube_proxy.freshness is not Freshness.FRESH:
        # Measured when the agent sensed, not now: said with the report's age, or the two disagree.
        details.append(
            f"agent's verdict in its report of {age(status.observed_at, now)} ago: {kube_proxy.reason}"
        )
    drift = [f for f in findings if f.type in RESTART_WORTHY and f.backend]
    if kube_proxy.freshness is Freshness.STALE:
        verdict, summary = Verdict.PROBLEM, "kube-proxy has not synced while changes are pending"
    elif kube_proxy.freshness is Freshness.UNKNOWN:
        verdict = Verdict.UNKNOWN
        summary = "kube-proxy's metrics or healthz could not be read: unknown, never a reason to act"
    elif drift:
        verdict = Verdict.PROBLEM
        summary = (
            f"the sync looks fresh and healthz is {kube_proxy.healthz}, but its rules miss live backends"
        )
    else:
        verdict, summary = Verdict.OK, "kube-proxy syncs and nothing waits"
    details.append(HEALTHZ_NOT_ENOUGH)
    return StepReport(
        number=3,
        key="sync",
        title="kube-proxy sync freshness",
        manual=manual,
        verdict=verdict,
        summary=summary,
        details=details,
        facts={
            "freshness": str(kube_proxy.freshness),
            "reason": kube_proxy.reason,
            "lastSyncTime": kube_proxy.last_sync_time.isoformat() if kube_proxy.last_sync_time else None,
            "lastQueuedTime": kube_proxy.last_queued_time.isoformat()
            if kube_proxy.last_queued_time
            else None,
            "healthz": str(kube_proxy.healthz),
            "endpointChangesTotal": kube_proxy.endpoint_changes_total,
        },
    )


def step_real_servers(status: NodeProxyHealthStatus, selected: dict[VipKey, SelectedVip]) -> StepReport:
    rules = status.proxy_mode in RULE_MODES
    manual = [
        f"proxymedic programmed <node> --mode {status.proxy_mode}"
        if rules
        else "ipvsadm -Ln -u <VIP>:<port>",
        "kubectl get endpointslices -n <namespace> -l kubernetes.io/service-name=<service>",
    ]
    present = {(vs.vip, vs.port, str(vs.protocol)): vs for vs in status.virtual_servers}
    rows: list[list[str]] = []
    stale_total = missing_total = 0
    for key in sorted(selected, key=lambda k: (str(selected[k].service), k)):
        sel = selected[key]
        vs = present.get(key)
        wanted = sel.wanted(key[0])  # what kube-proxy should have programmed on this node
        live = sorted(wanted)
        real = sorted(rs.ip for rs in vs.real_servers) if vs is not None else []
        stale = sorted(set(real) - sel.live - wanted)
        missing = sorted(wanted - set(real)) if vs is not None or not status.virtual_servers_truncated else []
        stale_total += len(stale)
        missing_total += len(missing)
        rows.append(
            [
                str(sel.service),
                f"{key[0]}:{key[1]}/{key[2]}",
                ",".join(live) or "-",
                ",".join(real) if vs is not None else "no virtual server",
                ",".join(stale) or "-",
                ",".join(missing) or "-",
            ]
        )
    facts = {
        "services": len({str(s.service) for s in selected.values()}),
        "stale": stale_total,
        "missing": missing_total,
    }
    table = Table(
        columns=["SERVICE", "VIRTUAL SERVER", "ENDPOINTS", "REAL SERVERS", "STALE", "MISSING"], rows=rows
    )
    if status.proxy_mode is not ProxyMode.IPVS and not rules and not status.virtual_servers:
        verdict, summary, table_or_none = (
            Verdict.NOT_APPLICABLE,
            f"no IPVS real servers in {status.proxy_mode} mode",
            None,
        )
    elif not selected:
        verdict, summary, table_or_none = Verdict.INFO, "no policy selects a Service on this node", None
    elif stale_total or missing_total:
        parts = []
        if missing_total:
            parts.append(
                plural(missing_total, "live backend has", "live backends have")
                + (" no rule" if rules else " no real server")
            )
        if stale_total:
            parts.append(
                plural(stale_total, "rule sends", "rules send") + " traffic to backends that left"
                if rules
                else plural(stale_total, "real server belongs", "real servers belong")
                + " to backends that left"
            )
        verdict, summary, table_or_none = Verdict.PROBLEM, "; ".join(parts), table
    else:
        verdict, summary, table_or_none = (
            Verdict.OK,
            f"real servers match the EndpointSlices of {facts['services']} selected Services",
            table,
        )
    return StepReport(
        number=4,
        key="real-servers",
        title="Real servers vs EndpointSlices",
        manual=manual,
        verdict=verdict,
        summary=summary,
        table=table_or_none,
        facts=facts,
    )


def step_scope(
    view: View, node: str, findings: list[DriftFinding], now: datetime
) -> tuple[StepReport, Scope]:
    manual = ["repeat steps 2-6 on other nodes", "kubectl get nodeproxyhealths"]
    reporting = sorted(n for n, s in view.healths.items() if not silent(s, now))
    policies = policies_for(view, node)
    guard = policies[0].spec.guardrails if policies else Guardrails()
    kinds = sorted({str(f.type) for f in findings})
    rows: list[list[str]] = []
    cluster_wide: list[str] = []
    for kind in kinds:
        having = [n for n in reporting if any(str(f.type) == kind for f in findings_of(view, n, now))]
        rows.append(
            [
                kind,
                f"{len(having)} of {len(reporting)}",
                ",".join(having[:6]) + (",…" if len(having) > 6 else ""),
            ]
        )
        wide = len(having) >= max(2, guard.anomaly_min_nodes) and len(
            having
        ) * 100 > guard.anomaly_threshold_percent * len(reporting)
        if wide:
            cluster_wide.append(kind)
    tripped = [p.metadata.name for p in policies if breaker_tripped(view, p, now)]
    if not kinds:
        scope, verdict, summary = Scope.HEALTHY, Verdict.OK, "nothing to place: no finding on this node"
    elif tripped or cluster_wide:
        scope, verdict = Scope.CLUSTER_WIDE, Verdict.PROBLEM
        summary = (
            f"cluster-wide: {', '.join(cluster_wide) or 'stale kube-proxy'} on more than "
            f"{guard.anomaly_threshold_percent}% of {len(reporting)} nodes; "
            "suspect the control plane or the network"
        )
        if tripped:
            summary += f" (anomaly breaker tripped in policy {', '.join(tripped)}: restarts are held)"
    else:
        scope, verdict = Scope.NODE_LOCAL, Verdict.INFO
        alone = all(row[1].startswith("1 of") for row in rows)
        summary = (
            f"node-local: no other of the {len(reporting)} reporting nodes has these findings"
            if alone
            else f"node-local: below the anomaly threshold "
            f"({guard.anomaly_threshold_percent}% of {len(reporting)} nodes)"
        )
    table = Table(columns=["FINDING", "NODES", "WHICH"], rows=rows) if rows else None
    report = StepReport(
        number=7,
        key="scope",
        title="Node-local or cluster-wide",
        manual=manual,
        verdict=verdict,
        summary=summary,
        table=table,
        facts={
            "scope": str(scope),
            "reportingNodes": len(reporting),
            "clusterWide": cluster_wide,
            "breakerTripped": tripped,
        },
    )
    return report, scope


def _unknown_node(view: View, node: str) -> UnknownNodeError:
    known = sorted(set(view.nodes) | set(view.healths))
    close = difflib.get_close_matches(node, known, n=1)
    hint = f"; did you mean {close[0]}?" if close else f"; {len(known)} nodes are known (kubectl get nodes)"
    return UnknownNodeError(f'node "{node}" not found{hint}')


def build_diagnosis(view: View, node: str, now: datetime) -> Diagnosis:
    status = view.healths.get(node)
    if status is None:
        if node not in view.nodes and node not in view.invalid_reports:
            raise _unknown_node(view, node)
        why = view.invalid_reports.get(node)
        raise NoAgentError(
            f'node "{node}" has no ProxyMedic agent report'
            + (f" that can be read ({why})" if why else " (no NodeProxyHealth)")
            + ": is the agent DaemonSet scheduled there? "
            f"kubectl get pods -A -l app.kubernetes.io/component=agent --field-selector spec.nodeName={node}"
        )
    selected = selected_vips(view, node, status.proxy_mode)
    findings = findings_of(view, node, now)
    scope_step, scope = step_scope(view, node, findings, now)
    steps = [
        step_mode(status, node),
        step_stuck_connections(status, selected),
        step_sync(status, findings, now),
        step_real_servers(status, selected),
        steps_local.step_conntrack(view, node, status, now),
        steps_local.step_sysctls(view, node, status),
        scope_step,
        step_proxymedic(view, node, status, now),
    ]
    health = health_of(view, node, now)
    problems = [step for step in steps if step.verdict is Verdict.PROBLEM and step.key != "scope"]
    summary = [f"{step.title}: {step.summary}" for step in problems]
    verdict = Verdict.PROBLEM if problems or scope_step.verdict is Verdict.PROBLEM else Verdict.OK
    if verdict is Verdict.OK and any(step.verdict is Verdict.UNKNOWN for step in steps):
        verdict = Verdict.UNKNOWN
    if silent(status, now):
        summary.insert(
            0,
            f"the agent's last report is {age(status.observed_at, now)} old: what follows may be out of date",
        )
    if problems:
        summary.append(scope_step.summary)
    summary.append(steps[-1].summary)
    return Diagnosis(
        generated_at=now,
        node=node,
        observed_at=status.observed_at,
        agent_version=status.agent_version,
        kernel_version=status.kernel_version,
        health=str(health.health),
        verdict=verdict,
        scope=scope,
        summary=summary,
        steps=steps,
    )
