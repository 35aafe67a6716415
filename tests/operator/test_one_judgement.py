"""``proxymedic diagnose`` predicts the operator's decision: for generated cluster snapshots
(policies, reports, Events, slices), what the runbook says each policy would do on a node is
exactly what the operator decides there.

The operator is one that has just started: it restores its memory from the Events, watches the
cluster for a while, and then judges the node on its next report. The runbook judges the same
objects from outside at the same moment. Each proposal the operator weighs is recorded with the
guardrails' verdict (allowed, dry-run, or the rule that held it) and compared with the runbook's
plans for that node.
"""

from __future__ import annotations

import asyncio
import copy
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from proxymedic.kube.client import JsonObject, KubeClient
from proxymedic.kube.events import EventRecorder
from proxymedic.kube.resources import EVENTS, INTENTS, PODS, Resource
from proxymedic.operator.controller import Controller
from proxymedic.operator.guardrails import ClusterView, Proposal, Verdict
from proxymedic.operator.record import restart_record
from proxymedic.operator.repairs import NodeRepairs
from proxymedic.runbook.judge import plans
from proxymedic.runbook.snapshot import OPERATOR_COMPONENT, Snapshot, build_view
from tests.unit.factories import node_health

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
VIP = "10.96.0.10"
POOL = [f"10.244.1.{i}" for i in range(1, 5)]
NODES = [f"node-{i}" for i in range(1, 4)]
POLICIES = ["dns-a", "dns-b"]
SECOND_ROUND = timedelta(seconds=10)
Decision = tuple[str, str, bool, bool, str | None]
"""(policy, action kind, allowed, dry-run, the rule that held it)."""


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@st.composite
def policy_bodies(draw: st.DrawFn, name: str) -> JsonObject:
    per_node = draw(st.integers(1, 3))
    return {
        "apiVersion": "proxymedic.io/v1alpha1",
        "kind": "ProxyHealthPolicy",
        "metadata": {"name": name, "uid": f"uid-{name}"},
        "spec": {
            "services": {
                "namespaces": ["kube-system"],
                "labelSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                "protocols": ["UDP"],
            },
            "nodes": {"labelSelector": {"matchLabels": {"pool": name}}},
            "actions": {
                "flushStaleConnections": {"enabled": True},
                "removeStaleRealServers": {"enabled": draw(st.booleans())},
                "enforceSysctls": {"enabled": draw(st.booleans())},
                "restartKubeProxy": {
                    "enabled": draw(st.booleans()),
                    "staleAfter": draw(st.sampled_from(["30s", "2m", "10m"])),
                },
            },
            "guardrails": {
                "dryRun": draw(st.booleans()),
                "minObservation": draw(st.sampled_from(["30s", "2m", "5m"])),
                "nodeCooldown": draw(st.sampled_from(["0s", "1m", "15m", "1h"])),
                "hourlyBudget": {"perNode": per_node, "perCluster": draw(st.integers(per_node, 6))},
                "maxConcurrentKubeProxyRestarts": draw(st.integers(1, 2)),
                "anomalyThresholdPercent": draw(st.sampled_from([34, 50, 100])),
                "anomalyMinNodes": draw(st.integers(1, 3)),
            },
        },
    }


@st.composite
def reports(draw: st.DrawFn, node: str) -> JsonObject:
    stale = draw(st.booleans())
    # A stale report is one every policy's staleAfter (10m at most) agrees with: a report that
    # crossed a staleAfter moments ago is seen for less long by the operator than the agent says,
    # which the runbook cannot know (its plans say so).
    synced_ago = timedelta(seconds=draw(st.integers(601, 1800) if stale else st.integers(5, 1800)))
    kube_proxy: JsonObject = {
        "freshness": "Stale" if stale else "Fresh",
        "healthz": "Healthy",
        "lastSyncTime": _iso(T0 - synced_ago),
    }
    findings: list[JsonObject] = []
    if stale:
        kube_proxy["reason"] = f"no sync for {int(synced_ago.total_seconds())} s"
        since = T0 - timedelta(seconds=draw(st.integers(0, 600)))
        findings.append({"type": "KubeProxySyncStale", "message": kube_proxy["reason"], "since": _iso(since)})
    expire = draw(st.sampled_from([0, 1]))
    if expire == 0:
        findings.append(
            {
                "type": "SysctlDrift",
                "message": "net.ipv4.vs.expire_nodest_conn is 0, expected 1",
                "since": _iso(T0 - timedelta(seconds=draw(st.integers(0, 600)))),
            }
        )
    programmed = draw(st.sets(st.sampled_from(POOL)))
    report = node_health(
        observedAt=_iso(T0),
        incarnation=f"agent-{node}",
        round=1,
        kubeProxy=kube_proxy,
        sysctls={"net.ipv4.vs.expire_nodest_conn": expire},
        virtualServers=[
            {
                "vip": VIP,
                "port": 53,
                "protocol": "UDP",
                "realServers": [
                    {"ip": ip, "port": 53, "weight": 1, "connections": 0} for ip in sorted(programmed)
                ],
            }
        ],
        findings=findings,
        recentResults=[],
    )
    report["metadata"]["name"] = report["spec"]["nodeName"] = node
    return report


@st.composite
def restart_events(draw: st.DrawFn) -> list[JsonObject]:
    """KubeProxyRestarted Events of the last 90 minutes: annotated, written by an earlier version
    (the policy at the end of the message only), or another component's."""
    events = []
    for index in range(draw(st.integers(0, 5))):
        policy, node = draw(st.sampled_from(POLICIES)), draw(st.sampled_from(NODES))
        # Half of them recent enough to be restarts still in progress when the node is judged.
        first = T0 - timedelta(seconds=draw(st.integers(0, 240) | st.integers(0, 5400)))
        last = first + timedelta(seconds=draw(st.integers(0, 600)))
        last = min(last, T0)
        style = draw(st.sampled_from(["annotated", "legacy", "other component"]))
        component = "someone-else" if style == "other component" else OPERATOR_COMPONENT
        events.append(
            {
                "metadata": {
                    "name": f"{node}.{index}",
                    "namespace": "default",
                    **({"annotations": restart_record(policy, node)} if style == "annotated" else {}),
                },
                "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": node},
                "reason": "KubeProxyRestarted",
                "message": f"deleted kube-proxy pod kube-proxy-{node} on {node}: stale [policy {policy}]",
                "type": "Warning",
                "count": draw(st.integers(1, 3)),
                "firstTimestamp": _iso(first),
                "lastTimestamp": _iso(last),
                "source": {"component": component},
                "reportingComponent": component,
            }
        )
    return events


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    policies = [draw(policy_bodies(name)) for name in POLICIES]
    nodes = [
        {
            "metadata": {
                "name": node,
                "uid": f"uid-{node}",
                "labels": {"pool": draw(st.sampled_from(POLICIES))},
            }
        }
        for node in NODES
    ]
    ready = draw(st.sets(st.sampled_from(POOL), min_size=1))
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kube-dns",
            "namespace": "kube-system",
            "uid": "svc",
            "labels": {"k8s-app": "kube-dns"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": VIP,
            "clusterIPs": [VIP],
            "ipFamilies": ["IPv4"],
            "ports": [{"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 53}],
        },
    }
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kube-dns-1",
            "namespace": "kube-system",
            "uid": "slice",
            "labels": {"kubernetes.io/service-name": "kube-dns"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "dns", "protocol": "UDP", "port": 53}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in sorted(ready)],
    }
    return Snapshot(
        policies=policies,
        healths=[draw(reports(node)) for node in NODES],
        nodes=nodes,
        events=draw(restart_events()),
        services=[service],
        slices=[slice_],
    )


@dataclass
class RecordingApi(KubeClient):
    """The API as a restarted operator meets it: the snapshot's Events, one kube-proxy pod per node."""

    events: list[JsonObject]
    created: list[JsonObject] = field(default_factory=list)

    def __post_init__(self) -> None:  # no HTTP session: every call used here is answered in memory
        pass

    async def list(
        self, resource: Resource, namespace: str | None = None, **params: Any
    ) -> tuple[list[Any], str]:
        if resource is EVENTS:
            return copy.deepcopy(self.events), "1"
        assert resource is PODS, resource
        node = str(params.get("field_selector", "")).removeprefix("spec.nodeName=")
        owner = {"kind": "DaemonSet", "name": "kube-proxy", "uid": "ds", "controller": True}
        return [
            {
                "metadata": {
                    "name": f"kube-proxy-{node}",
                    "namespace": "kube-system",
                    "ownerReferences": [owner],
                }
            }
        ], "1"

    async def create(self, resource: Resource, obj: JsonObject, namespace: str | None = None) -> JsonObject:
        created = copy.deepcopy(obj)
        created["metadata"].setdefault("uid", f"uid-{len(self.created)}")
        self.created.append(created)
        return created

    async def patch(
        self, resource: Resource, name: str, patch: JsonObject, namespace: str | None = None, **_: Any
    ) -> JsonObject:
        return patch

    async def delete(self, resource: Resource, name: str, namespace: str | None = None, **_: Any) -> None:
        assert resource in (PODS, INTENTS), resource


class RecordingController(Controller):
    """The operator, with every verdict of its guardrails written down."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.verdicts: list[tuple[str, Proposal, Verdict]] = []

    def guard(self, policy: Any, proposal: Proposal, view: ClusterView | None = None) -> Verdict:
        verdict = super().guard(policy, proposal, view)
        self.verdicts.append((policy.metadata.name, proposal, verdict))
        return verdict


def watched_for(snapshot: Snapshot) -> timedelta:
    """Long enough for every finding to have lasted the ladder's observation in every policy."""
    longest = timedelta(0)
    units = {"s": 1, "m": 60}
    for body in snapshot.policies:
        spec = body["spec"]
        durations = [spec["guardrails"]["minObservation"], spec["actions"]["restartKubeProxy"]["staleAfter"]]
        longest = max(
            longest, sum((timedelta(seconds=int(d[:-1]) * units[d[-1]]) for d in durations), timedelta(0))
        )
    return longest + timedelta(seconds=1)


def sensed(report: JsonObject, round_: int, moment: datetime) -> JsonObject:
    """The same report, sensed again in a later round."""
    again = copy.deepcopy(report)
    again["status"]["round"] = round_
    again["status"]["observedAt"] = _iso(moment)
    return again


async def operator_decisions(snapshot: Snapshot, node: str) -> tuple[list[Decision], datetime]:
    """The verdicts of an operator that restored its memory from the Events at T0, saw every node
    report twice (the second report sensed after it saw the slices: evidence), and then, once
    every finding has lasted long enough, judges the node on its next report: the first moment
    anything is due, so nothing it did in between changes the picture."""
    clock = [T0]
    api = RecordingApi(copy.deepcopy(snapshot.events))
    controller = RecordingController(
        api, EventRecorder(api, OPERATOR_COMPONENT, "test"), clock=lambda: clock[0]
    )
    await controller.restore_history(OPERATOR_COMPONENT)
    cluster = controller.cluster
    for body in snapshot.policies:
        entry = cluster.set_policy(body["metadata"]["name"], copy.deepcopy(body))
        assert entry is not None
        assert entry.policy is not None, entry.errors
    for obj in snapshot.nodes:
        cluster.set_node(copy.deepcopy(obj), deleted=False)
    for obj in snapshot.services:
        cluster.set_service(copy.deepcopy(obj), deleted=False)
    for obj in snapshot.slices:
        cluster.set_slice(copy.deepcopy(obj), deleted=False)
    for report in snapshot.healths:
        cluster.set_health(report["metadata"]["name"], copy.deepcopy(report), T0)
    repairs = NodeRepairs.of(controller)
    await repairs.sweep()
    clock[0] = T0 + SECOND_ROUND
    for report in snapshot.healths:
        assert await controller.accept_report(report["metadata"]["name"], sensed(report, 2, clock[0]))
        await repairs.on_report(report["metadata"]["name"])
    assert not controller.verdicts, "nothing is due before the minimum observation"
    clock[0] = now = T0 + SECOND_ROUND + watched_for(snapshot)
    for report in snapshot.healths:  # every agent reports on time; the node judged is the last
        if report["metadata"]["name"] != node:
            cluster.set_health(report["metadata"]["name"], sensed(report, 3, now), now)
    repairs.settle_restarts()  # the housekeeping's bookkeeping, due many times over by now
    report = next(r for r in snapshot.healths if r["metadata"]["name"] == node)
    assert await controller.accept_report(node, sensed(report, 3, now))
    await repairs.on_report(node)
    decisions = [
        (name, str(p.kind), v.allowed, v.dry_run, str(v.rule) if v.rule else None)
        for name, p, v in controller.verdicts
        if p.node == node
    ]
    return sorted(decisions, key=str), now


def runbook_decisions(snapshot: Snapshot, node: str, now: datetime) -> list[Decision]:
    """The runbook's plans for the node, from the objects as the operator last saw them."""
    moved = copy.deepcopy(snapshot)
    moved.healths = [sensed(r, 3, now) for r in snapshot.healths]
    view = build_view(moved)
    return sorted(
        (
            (
                plan.policy,
                str(plan.proposal.kind),
                plan.verdict.allowed,
                plan.verdict.dry_run,
                str(plan.verdict.rule) if plan.verdict.rule else None,
            )
            for plan in plans(view, node, now)
        ),
        key=str,
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshot=snapshots(), node=st.sampled_from(NODES))
def test_diagnose_predicts_the_operators_decision(snapshot: Snapshot, node: str) -> None:
    # In a thread of its own: asyncio.run on pytest's thread would leave pytest-asyncio's loop unclosed.
    with ThreadPoolExecutor(1) as pool:
        decided, now = pool.submit(asyncio.run, operator_decisions(snapshot, node)).result()
    event(
        "decisions: "
        + (
            ", ".join(sorted({f"{d[1]} {d[4] or ('dry-run' if d[3] else 'allowed')}" for d in decided}))
            or "none"
        )
    )
    assert runbook_decisions(snapshot, node, now) == decided
