"""Drift between a node's reported dataplane and the cluster's EndpointSlices, and the escalation ladder.

``detect`` compares one NodeProxyHealth with the live backends of the selected Services.
``Ladder`` remembers how long each finding has lasted and what was already tried, and turns
findings into proposals, one rung at a time (docs/architecture.md, "Drift"):

1. connections to a dead backend whose real server is gone → flush them (D3);
2. a real server for a dead backend → remove it (the kernel then expires its connections);
3. the removed real server comes back, a live backend's real server stays missing, or the
   sync is stale → restart kube-proxy: its own cache is stale, and only a restart cures that.

In nftables and iptables mode the agent reports kube-proxy's rules in the same shape (their
endpoints as real servers, conntrack entries answered by an endpoint they no longer name as
orphaned connections), judged against the expectation of that mode. Rung 2 does not exist
there: ProxyMedic never edits kube-proxy's rules, so a rule that still sends traffic to a dead
backend (``StaleRule``) is kube-proxy's cache, cured by a restart once it has outlasted the
time kube-proxy may take to program a change, as a missing one is.

Each rung waits for the policy's minimum observation time, so the edge-triggered flush of a
Service change and kube-proxy's own sync get their chance first. Findings reach the ladder only
from reports sensed after the change they are judged against (``causality.py``); a removal is
done when a sensing round verified it, and undone only in a later round of the same agent.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from proxymedic.api.health import (
    Finding,
    FindingType,
    Freshness,
    IntentResult,
    NodeProxyHealthStatus,
    ProxyMode,
)
from proxymedic.api.intent import IntentOutcome
from proxymedic.operator.backends import ServiceRef
from proxymedic.operator.causality import Sensed
from proxymedic.operator.guardrails import ActionKind

VipKey = tuple[str, int, str]
"""(VIP, port, protocol) of a virtual server."""

READD_MEMORY = timedelta(minutes=30)
"""How long a removal we ordered counts as evidence when its real server comes back."""
REMOVAL_DONE = (IntentOutcome.APPLIED, IntentOutcome.ALREADY_CLEAN)
"""Outcomes after which the real server was gone from the node: removed, or kube-proxy had removed it."""


@dataclass(frozen=True)
class SelectedVip:
    service: ServiceRef
    policy: str
    live: frozenset[str]
    """The backends kube-proxy uses somewhere in the cluster: never judged stale."""
    target_port: int
    expected: frozenset[str] | None = None
    """The real servers kube-proxy should have programmed for this virtual server on the judged
    node (``proxymedic.expectation``); None: every live backend of the VIP's address family."""

    def wanted(self, vip: str) -> frozenset[str]:
        if self.expected is not None:
            return self.expected
        version = ipaddress.ip_address(vip).version
        return frozenset(ip for ip in self.live if ipaddress.ip_address(ip).version == version)


RULE_MODES = frozenset({ProxyMode.NFTABLES, ProxyMode.IPTABLES})


class Selection(dict[VipKey, SelectedVip]):
    """A policy's selected virtual servers, the same for every node; ``on(node, mode)`` narrows them
    to what kube-proxy programs on that node in that mode (traffic policies, topology, NodePorts,
    LB ingress; a Local policy with no local endpoint falls back only in IPVS mode)."""

    def on(self, node: str, mode: ProxyMode = ProxyMode.IPVS) -> Mapping[VipKey, SelectedVip]:
        return self


_GRACEFUL_PROTOCOLS = frozenset({"TCP"})
"""kube-proxy removes a real server of these at weight 0 and deletes it once its connections end
(its graceful termination; UDP and SCTP real servers are deleted at once)."""


@dataclass(frozen=True)
class DriftFinding:
    node: str
    type: FindingType
    message: str
    service: ServiceRef | None = None
    vip: str | None = None
    port: int | None = None
    backend: str | None = None
    readded: bool = False
    """A stale real server sensed after ProxyMedic's removal of it was verified: kube-proxy put it back."""

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.node, str(self.type), str(self.service or ""), self.backend or "")


def detect(
    node: str, status: NodeProxyHealthStatus, selected: Mapping[VipKey, SelectedVip]
) -> list[DriftFinding]:
    """Findings of one node; the agent's own node-local findings pass through unchanged."""
    findings: list[DriftFinding] = []
    rules = status.proxy_mode in RULE_MODES
    mode = status.proxy_mode if rules else ProxyMode.IPVS
    on_node = selected.on(node, mode) if isinstance(selected, Selection) else selected
    for vs in status.virtual_servers:
        sel = on_node.get((vs.vip, vs.port, str(vs.protocol)))
        if sel is None:
            continue
        where = f"{sel.service} ({vs.vip}:{vs.port}/{vs.protocol})"
        present = {rs.ip for rs in vs.real_servers}
        wanted = sel.wanted(vs.vip)
        draining = not rules and str(vs.protocol) in _GRACEFUL_PROTOCOLS
        for rs in vs.real_servers:
            if rs.ip not in sel.live and rs.ip not in wanted and not (draining and rs.weight == 0):
                findings.append(
                    DriftFinding(
                        node,
                        FindingType.STALE_RULE if rules else FindingType.STALE_REAL_SERVER,
                        f"kube-proxy's {mode} rules of {where} still send traffic to {rs.ip}:{rs.port}, "
                        "no longer a backend"
                        if rules
                        else f"real server {rs.ip}:{rs.port} of {where} is no longer a backend",
                        sel.service,
                        vs.vip,
                        vs.port,
                        rs.ip,
                    )
                )
        for orphan in vs.orphaned_connections:
            gone = orphan.ip not in sel.live and orphan.ip not in wanted and orphan.ip not in present
            if gone and orphan.connections > 0:
                findings.append(
                    DriftFinding(
                        node,
                        FindingType.STALE_CONNECTIONS,
                        f"{orphan.connections} connection entries of {where} still point at {orphan.ip}",
                        sel.service,
                        vs.vip,
                        vs.port,
                        orphan.ip,
                    )
                )
        for backend in sorted(wanted - present):
            findings.append(
                DriftFinding(
                    node,
                    FindingType.MISSING_REAL_SERVER,
                    f"backend {backend} of {where} has no "
                    + (f"{mode} rule" if rules else "real server")
                    + " on this node",
                    sel.service,
                    vs.vip,
                    vs.port,
                    backend,
                )
            )
    if status.kube_proxy.freshness is Freshness.STALE:
        findings.append(
            DriftFinding(
                node,
                FindingType.KUBE_PROXY_SYNC_STALE,
                status.kube_proxy.reason or "kube-proxy sync is stale",
            )
        )
    findings.extend(_reported(node, status.findings))
    return findings


_NODE_LOCAL = {FindingType.SYSCTL_DRIFT, FindingType.CONNTRACK_PRESSURE}
RESTART_WORTHY = frozenset(
    {
        FindingType.KUBE_PROXY_SYNC_STALE,
        FindingType.KUBE_PROXY_WATCH_SILENT,
        FindingType.MISSING_REAL_SERVER,
        FindingType.STALE_RULE,
    }
)
PROGRAMMING = frozenset({FindingType.MISSING_REAL_SERVER, FindingType.STALE_RULE})
"""Findings that kube-proxy cures itself once it programs the change: they wait ``program_grace``."""


def _reported(node: str, reported: Iterable[Finding]) -> Iterable[DriftFinding]:
    for finding in reported:
        if finding.type in _NODE_LOCAL:
            yield DriftFinding(node, finding.type, finding.message, vip=finding.vip, port=finding.port)


@dataclass(frozen=True)
class Step:
    """One rung the ladder proposes for a node."""

    kind: ActionKind
    node: str
    since: datetime
    finding: DriftFinding
    remove_real_servers: bool = False


FindingKey = tuple[str, str, str, str]
RemovalKey = tuple[str, str]
"""(service, backend) of a real server removal on a node."""


@dataclass
class Removal:
    intent: str
    ordered_at: datetime
    """The operator's clock: the restart's observation time counts from here."""
    verified: Sensed | None = None
    """The node's sensing round that ran after the removal was applied; None until it is reported."""
    learned: bool = False
    """Made by a Service's flush intent at the moment the backend left, maybe before this node's
    kube-proxy had processed the change: a sync that began before it saw the backend leave puts
    the real server back, and the next one takes it out (each sync took 18 to 45 s on the
    emulated node of the real-cluster tier). Its return is a stale real server again, which the
    ladder removes after the minimum observation; only a re-add after that removal is evidence."""


@dataclass
class Ladder:
    min_observation: timedelta
    program_grace: timedelta = timedelta(0)
    """How long kube-proxy may take to program a live backend before its absence counts: the
    policy's ``restartKubeProxy.staleAfter``. A kube-proxy that is slow to sync (a big cluster, a
    busy node) is not a stalled one, and a false restart flushes every UDP conntrack entry of
    the node, so a missing real server must outlast this and then the minimum observation."""
    first_seen: dict[FindingKey, datetime] = field(default_factory=dict)
    removed: dict[str, dict[RemovalKey, Removal]] = field(default_factory=dict)
    """Real server removals we ordered, by node: each report looks at its own node's only."""
    _seen_by_node: dict[str, set[FindingKey]] = field(default_factory=dict)
    """The keys of ``first_seen`` by node: a report observes one node without a walk over every
    node's findings (at 5,000 nodes, that walk on each report took most of the operator's time)."""
    _removals_pruned_at: datetime | None = None

    def observe(self, node: str, findings: list[DriftFinding], now: datetime) -> None:
        """Record the node's current findings; those that disappeared start over."""
        current = {finding.key for finding in findings}
        for key in self._seen_by_node.get(node, set()) - current:
            self.first_seen.pop(key, None)
        for key in current:
            self.first_seen.setdefault(key, now)
        if current:
            self._seen_by_node[node] = current
        else:
            self._seen_by_node.pop(node, None)
        self._prune_removals(now)

    def _prune_removals(self, now: datetime) -> None:
        # Forgetting removals older than READD_MEMORY needs no precision: once a minute is enough.
        if self._removals_pruned_at is not None and now - self._removals_pruned_at < timedelta(minutes=1):
            return
        self._removals_pruned_at = now
        horizon = now - READD_MEMORY
        for node, removals in list(self.removed.items()):
            for key in [key for key, removal in removals.items() if removal.ordered_at < horizon]:
                del removals[key]
            if not removals:
                del self.removed[node]

    def learn_removal(self, node: str, key: RemovalKey, intent: str, ordered_at: datetime) -> None:
        """A removal a Service's flush intent made on this node (the node reported its result)."""
        self.removed.setdefault(node, {}).setdefault(key, Removal(intent, ordered_at, learned=True))

    def verify_removals(
        self,
        node: str,
        round_: Sensed | None,
        results: Iterable[IntentResult],
        still_open: Callable[[str], bool],
    ) -> None:
        """Learn from a node's report which removals it applied, and in which round it verified them.

        A removal that did not happen (dry-run, refused, failed), or whose intent closed without
        this node's result, is forgotten: its real server is a stale one again, not a re-added one.
        """
        mine = self.removed.get(node)
        if not mine:
            return
        by_intent = {result.intent: result for result in results}
        for key, removal in list(mine.items()):
            result = by_intent.get(removal.intent)
            if result is None:
                if removal.verified is None and not still_open(removal.intent):
                    del mine[key]
                continue
            if result.outcome not in REMOVAL_DONE:
                del mine[key]
            elif round_ is not None and result.verified_round is not None:
                # The latest report's agent: a restarted agent re-applies the intent and verifies it anew.
                removal.verified = Sensed(round_.incarnation, result.verified_round)

    def judge_removals(
        self, node: str, findings: list[DriftFinding], round_: Sensed | None
    ) -> list[DriftFinding]:
        """A stale real server we ordered removed is re-added only when sensed in a later round than
        the one that verified its removal; until then (or from another incarnation) it is no finding."""
        judged: list[DriftFinding] = []
        for finding in findings:
            removal = self._removal(node, finding)
            if removal is None:
                judged.append(finding)
            elif removal.learned:
                # Maybe a healthy kube-proxy's sync that began before it saw the backend leave:
                # a stale real server again, which the ladder removes after the minimum
                # observation; a re-add after that removal is the evidence.
                if round_ is not None and round_.after(removal.verified):
                    judged.append(finding)
            elif round_ is not None and round_.after(removal.verified):
                judged.append(replace(finding, readded=True))
        return judged

    def steps(self, node: str, findings: list[DriftFinding], now: datetime) -> list[Step]:
        """The rungs that are due for the node now: at most one restart and one sysctl step."""
        due: list[Step] = []
        restart: Step | None = None
        sysctls: Step | None = None
        for finding in findings:
            removal = self._removal(node, finding) if finding.readded else None
            if removal is not None:
                # Removed by us and back again: the removal and its undoing are the observation.
                restart = restart or Step(
                    ActionKind.RESTART_KUBE_PROXY,
                    node,
                    removal.ordered_at,
                    DriftFinding(
                        node,
                        FindingType.KUBE_PROXY_SYNC_STALE,
                        f"kube-proxy re-added real server {finding.backend} of {finding.service} "
                        "after its removal: its cache is stale",
                        finding.service,
                        finding.vip,
                        finding.port,
                        finding.backend,
                    ),
                )
                continue
            since = self.first_seen.get(finding.key, now)
            if now - since < self._observation(finding):
                continue
            if finding.type is FindingType.STALE_CONNECTIONS:
                due.append(Step(ActionKind.FLUSH_STALE_BACKENDS, node, since, finding))
            elif finding.type is FindingType.STALE_REAL_SERVER:
                due.append(
                    Step(ActionKind.FLUSH_STALE_BACKENDS, node, since, finding, remove_real_servers=True)
                )
            elif finding.type in RESTART_WORTHY:
                restart = restart or Step(ActionKind.RESTART_KUBE_PROXY, node, since, finding)
            elif finding.type is FindingType.SYSCTL_DRIFT:
                sysctls = sysctls or Step(ActionKind.ENFORCE_SYSCTLS, node, since, finding)
            elif finding.type is FindingType.CONNTRACK_PRESSURE:
                due.append(Step(ActionKind.RAISE_CONNTRACK_MAX, node, since, finding))
        return due + [step for step in (sysctls, restart) if step is not None]

    def _observation(self, finding: DriftFinding) -> timedelta:
        """How long a finding must last before its step is due."""
        if finding.type in PROGRAMMING:
            return self.program_grace + self.min_observation
        return self.min_observation

    def _removal(self, node: str, finding: DriftFinding) -> Removal | None:
        if finding.type is not FindingType.STALE_REAL_SERVER:
            return None
        return self.removed.get(node, {}).get((str(finding.service), finding.backend or ""))

    def acted(self, step: Step, now: datetime, intent: str | None = None) -> None:
        """A step ran (``intent`` issued for it): remember removals, and restart the clock of its finding.

        A removal is only ordered here; it counts as done when the node's report verifies it."""
        if step.remove_real_servers and step.finding.backend and intent is not None:
            removal = Removal(intent, now)
            self.removed.setdefault(step.node, {})[(str(step.finding.service), step.finding.backend)] = (
                removal
            )
        self.first_seen[step.finding.key] = now
        self._seen_by_node.setdefault(step.finding.key[0], set()).add(step.finding.key)
        if step.kind is ActionKind.RESTART_KUBE_PROXY:
            # A new kube-proxy: what the old one missed or put back ages again from the first
            # report sensed after the restart.
            self.removed.pop(step.node, None)
            for key in self._seen_by_node.pop(step.node, set()):
                self.first_seen.pop(key, None)

    def restart_candidates(
        self, findings_by_node: Mapping[str, list[DriftFinding]], now: datetime
    ) -> frozenset[str]:
        """Nodes that look stale now: a restart-worthy finding that has lasted the minimum observation,
        or a real server that came back after its removal. What the anomaly breaker counts."""
        stale = set()
        for node, findings in findings_by_node.items():
            for finding in findings:
                lasting = now - self.first_seen.get(finding.key, now) >= self._observation(finding)
                restart_worthy = finding.type in RESTART_WORTHY
                if (restart_worthy and lasting) or finding.readded:
                    stale.add(node)
        return frozenset(stale)
