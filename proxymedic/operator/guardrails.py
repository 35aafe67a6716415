"""Guardrails: pure functions of (policy, history, cluster view, now), no I/O (docs/architecture.md).

Every decision of the operator passes ``evaluate``. A hold names the rule that held it, so
the Event a user reads says exactly why nothing happened.

Actions differ in how much they can hurt, and the rules that apply follow from that:

* **restorative** actions (flush the state of backends that left the Service, remove a real
  server kube-proxy forgot) only do what kube-proxy should already have done, on state that
  belongs to dead backends. A CoreDNS rollout produces several in a few seconds, so they are
  bounded by the cluster budget but never by a node cooldown or a maintenance window.
* **tuning** actions (IPVS UDP timeout, sysctls) change node settings: the node cooldown and
  the per-node budget apply.
* **disruptive** actions (kube-proxy restart, conntrack max raise) additionally need a
  maintenance window when the policy lists any, the minimum observation time, the
  concurrency limit, and a quiet anomaly breaker.

Cooldowns and budgets count each kind of action on its own: a sysctl fix never delays the
restart a stalled kube-proxy needs, and a restart never spends the budget a flush or a sysctl
fix needs. A node's cooldown and per-node budget count what every policy did to the node (two
policies selecting one node do not restart its kube-proxy back to back); the cluster budget
counts the policy's own actions.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from proxymedic.api.intent import IntentAction
from proxymedic.api.policy import MaintenanceWindow, ProxyHealthPolicy
from proxymedic.api.types import format_duration, format_elapsed, resolve_count_or_percent

HOUR = timedelta(hours=1)


class ActionKind(enum.StrEnum):
    """What the guardrails count: each action an intent carries (spelled as in the contract), and
    the ones the operator tells apart or carries out itself."""

    FLUSH_STALE_BACKENDS = IntentAction.FLUSH_STALE_BACKENDS.value
    FLUSH_STALE_CONNTRACK = "FlushStaleConntrack"
    REMOVE_STALE_REAL_SERVER = "RemoveStaleRealServer"
    SET_IPVS_UDP_TIMEOUT = IntentAction.SET_IPVS_UDP_TIMEOUT.value
    ENFORCE_SYSCTLS = IntentAction.ENFORCE_SYSCTLS.value
    RESTART_KUBE_PROXY = "RestartKubeProxy"
    RAISE_CONNTRACK_MAX = IntentAction.RAISE_CONNTRACK_MAX.value


class Impact(enum.Enum):
    RESTORATIVE = "restorative"
    TUNING = "tuning"
    DISRUPTIVE = "disruptive"


IMPACT: dict[ActionKind, Impact] = {
    ActionKind.FLUSH_STALE_BACKENDS: Impact.RESTORATIVE,
    ActionKind.FLUSH_STALE_CONNTRACK: Impact.RESTORATIVE,
    ActionKind.REMOVE_STALE_REAL_SERVER: Impact.RESTORATIVE,
    ActionKind.SET_IPVS_UDP_TIMEOUT: Impact.TUNING,
    ActionKind.ENFORCE_SYSCTLS: Impact.TUNING,
    ActionKind.RESTART_KUBE_PROXY: Impact.DISRUPTIVE,
    ActionKind.RAISE_CONNTRACK_MAX: Impact.DISRUPTIVE,
}


class HoldRule(enum.StrEnum):
    """The rule that held an action; it is the reason suffix of the RemediationHeld Event."""

    PAUSED = "Paused"
    ACTION_DISABLED = "ActionDisabled"
    OUTSIDE_MAINTENANCE_WINDOW = "OutsideMaintenanceWindow"
    MIN_OBSERVATION = "MinObservation"
    NODE_COOLDOWN = "NodeCooldown"
    NODE_BUDGET = "NodeHourlyBudget"
    CLUSTER_BUDGET = "ClusterHourlyBudget"
    MAX_CONCURRENT_RESTARTS = "MaxConcurrentRestarts"
    RESTART_IN_PROGRESS = "RestartInProgress"
    ANOMALY_BREAKER = "AnomalyBreaker"


@dataclass(frozen=True)
class ActionRecord:
    """An action that ran (not dry-run): what the budgets and cooldowns count."""

    kind: ActionKind
    at: datetime
    node: str | None = None
    """The node it ran on; None for an action addressed to many nodes at once."""


@dataclass(frozen=True)
class Proposal:
    kind: ActionKind
    node: str | None = None
    """The node the action targets; None for a cluster-wide action such as a flush intent."""
    finding_since: datetime | None = None
    """When the finding that motivates the action was first seen (for the minimum observation)."""


@dataclass(frozen=True)
class ClusterView:
    """What the operator knows of the selected nodes right now."""

    selected_nodes: int
    stale_nodes: frozenset[str] = field(default_factory=frozenset)
    restarts_in_progress: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    dry_run: bool = False
    rule: HoldRule | None = None
    message: str = ""

    @classmethod
    def hold(cls, rule: HoldRule, message: str) -> Verdict:
        return cls(allowed=False, rule=rule, message=message)


_ACTION_FIELDS: dict[ActionKind, str] = {
    ActionKind.FLUSH_STALE_BACKENDS: "flush_stale_connections",
    ActionKind.FLUSH_STALE_CONNTRACK: "flush_stale_conntrack",
    ActionKind.REMOVE_STALE_REAL_SERVER: "remove_stale_real_servers",
    ActionKind.SET_IPVS_UDP_TIMEOUT: "ipvs_udp_timeout",
    ActionKind.ENFORCE_SYSCTLS: "enforce_sysctls",
    ActionKind.RESTART_KUBE_PROXY: "restart_kube_proxy",
    ActionKind.RAISE_CONNTRACK_MAX: "raise_conntrack_max",
}


def action_enabled(policy: ProxyHealthPolicy, kind: ActionKind) -> bool:
    return bool(getattr(policy.spec.actions, _ACTION_FIELDS[kind]).enabled)


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def in_window(window: MaintenanceWindow, now: datetime) -> bool:
    """Whether ``now`` (timezone-aware) falls in the weekly window, in the window's own time zone."""
    local = now.astimezone(ZoneInfo(window.time_zone))
    start, end = time.fromisoformat(window.start), time.fromisoformat(window.end)
    today = _WEEKDAYS[local.weekday()]
    yesterday = _WEEKDAYS[(local.weekday() - 1) % 7]
    moment = local.time()
    if start < end:
        return today in window.days and start <= moment < end
    # The window spans midnight: it belongs to the day it starts on.
    return (today in window.days and moment >= start) or (yesterday in window.days and moment < end)


def _count_since(history: Iterable[ActionRecord], since: datetime) -> int:
    return sum(1 for record in history if record.at > since)


def _same_kind_on(history: Iterable[ActionRecord], kind: ActionKind, node: str) -> list[ActionRecord]:
    """The node's earlier actions of this kind: what its cooldown and budget count."""
    return [r for r in history if r.node == node and r.kind is kind]


def evaluate(
    policy: ProxyHealthPolicy,
    proposal: Proposal,
    history: Sequence[ActionRecord],
    cluster: ClusterView,
    now: datetime,
    *,
    other_policies: Sequence[ActionRecord] = (),
) -> Verdict:
    """Allow, allow as dry-run, or hold ``proposal``; the first rule that holds wins.

    ``history`` is what the policy did; ``other_policies`` what the other policies did, which
    only the node rules count. The order puts the rules a user sets on purpose (pause, disabled
    action, windows) before the ones that protect the cluster (observation, cooldown, budgets,
    concurrency, breaker).
    """
    guard = policy.spec.guardrails
    kind, node = proposal.kind, proposal.node
    impact = IMPACT[kind]
    where = f" on node {node}" if node else ""

    if policy.paused:
        return Verdict.hold(HoldRule.PAUSED, f"policy {policy.metadata.name} is paused")
    if not action_enabled(policy, kind):
        return Verdict.hold(
            HoldRule.ACTION_DISABLED, f"{kind} is not enabled in policy {policy.metadata.name}"
        )

    if impact is Impact.DISRUPTIVE:
        if guard.maintenance_windows and not any(in_window(w, now) for w in guard.maintenance_windows):
            return Verdict.hold(
                HoldRule.OUTSIDE_MAINTENANCE_WINDOW, f"{kind}{where} waits for a maintenance window"
            )
        if proposal.finding_since is not None and now - proposal.finding_since < guard.min_observation:
            seen = format_elapsed(now - proposal.finding_since)
            return Verdict.hold(
                HoldRule.MIN_OBSERVATION,
                f"{kind}{where}: finding seen for {seen}, "
                f"less than the minimum observation of {format_duration(guard.min_observation)}",
            )

    if impact is not Impact.RESTORATIVE and node is not None:
        node_history = _same_kind_on([*history, *other_policies], kind, node)
        last = max((r.at for r in node_history), default=None)
        if last is not None and now - last < guard.node_cooldown:
            return Verdict.hold(
                HoldRule.NODE_COOLDOWN,
                f"{kind}{where}: the previous one ran {format_elapsed(now - last)} ago, "
                f"cooldown is {format_duration(guard.node_cooldown)}",
            )
        node_count = _count_since(node_history, now - HOUR)
        if node_count >= guard.hourly_budget.per_node:
            return Verdict.hold(
                HoldRule.NODE_BUDGET,
                f"{kind}{where}: {node_count} in the last hour, budget is {guard.hourly_budget.per_node}",
            )

    cluster_count = _count_since((r for r in history if r.kind is kind), now - HOUR)
    if cluster_count >= guard.hourly_budget.per_cluster:
        return Verdict.hold(
            HoldRule.CLUSTER_BUDGET,
            f"{kind}{where}: {cluster_count} in the cluster in the last hour, "
            f"budget is {guard.hourly_budget.per_cluster}",
        )

    if kind is ActionKind.RESTART_KUBE_PROXY:
        verdict = _restart_rules(policy, node, cluster)
        if verdict is not None:
            return verdict

    return Verdict(allowed=True, dry_run=guard.dry_run, message="dry-run" if guard.dry_run else "")


def anomaly_tripped(policy: ProxyHealthPolicy, cluster: ClusterView) -> bool:
    """Many selected nodes stale at once: the cause is the control plane or the network, not the nodes."""
    guard = policy.spec.guardrails
    stale = len(cluster.stale_nodes)
    if stale < guard.anomaly_min_nodes or cluster.selected_nodes == 0:
        return False
    return stale * 100 > guard.anomaly_threshold_percent * cluster.selected_nodes


def _restart_rules(policy: ProxyHealthPolicy, node: str | None, cluster: ClusterView) -> Verdict | None:
    guard = policy.spec.guardrails
    if anomaly_tripped(policy, cluster):
        return Verdict.hold(
            HoldRule.ANOMALY_BREAKER,
            f"{len(cluster.stale_nodes)} of {cluster.selected_nodes} nodes look stale at once "
            f"(threshold {guard.anomaly_threshold_percent}%): suspect the control plane or the network; "
            "holding every kube-proxy restart",
        )
    if node is not None and node in cluster.restarts_in_progress:
        # A kube-proxy that has not synced since its restart is still starting (a large cluster's
        # first sync can take minutes): a second restart would only interrupt it, whatever the cooldown.
        return Verdict.hold(
            HoldRule.RESTART_IN_PROGRESS,
            f"kube-proxy on {node} was restarted and has not reported a fresh sync since",
        )
    limit = resolve_count_or_percent(guard.max_concurrent_kube_proxy_restarts, cluster.selected_nodes)
    in_progress = cluster.restarts_in_progress - ({node} if node else set())
    if len(in_progress) >= limit:
        return Verdict.hold(
            HoldRule.MAX_CONCURRENT_RESTARTS,
            f"{len(in_progress)} kube-proxy restarts in progress, the limit is {limit} "
            f"({guard.max_concurrent_kube_proxy_restarts} of {cluster.selected_nodes} nodes)",
        )
    return None
