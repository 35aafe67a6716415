"""Node repairs: walk the escalation ladder on each node's findings, and restart a stale kube-proxy.

Restarting kube-proxy means deleting its pod on that node (its DaemonSet recreates it); the
operator does it, never the agent, and only when every guardrail allows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from proxymedic.api import reasons
from proxymedic.api import sysctls as names
from proxymedic.api.health import FindingType, NodeProxyHealthStatus
from proxymedic.api.intent import FlushStep, IntentAction, RemediationIntentSpec
from proxymedic.api.meta import API_VERSION
from proxymedic.api.policy import ProxyHealthPolicy
from proxymedic.api.reasons import EventKind
from proxymedic.kube.client import ApiError, KubeClient, NotFoundError, with_backoff
from proxymedic.kube.events import EventRecorder, ObjectRef
from proxymedic.kube.resources import PODS
from proxymedic.operator.backends import ServiceRef
from proxymedic.operator.causality import sensed
from proxymedic.operator.controller import Controller
from proxymedic.operator.drift import DriftFinding, FindingKey, Ladder, Step, detect
from proxymedic.operator.guardrails import (
    ActionKind,
    ActionRecord,
    ClusterView,
    Proposal,
    Verdict,
    anomaly_tripped,
)
from proxymedic.operator.judgement import (
    looks_stale,
    policy_findings,
    restart_settled,
    restart_views,
    synced_after,
)
from proxymedic.operator.metrics import OperatorMetrics
from proxymedic.operator.planner import IntentDraft, intent_name, plan_backend_flush
from proxymedic.operator.record import restart_record
from proxymedic.operator.restart_target import Backoff, split
from proxymedic.operator.state import Cluster, PolicyEntry

logger = logging.getLogger("proxymedic.operator")


class Decider(Protocol):
    """The guarded decision path (the controller): every action is weighed there, then held or issued."""

    def now(self) -> datetime: ...

    def guard(
        self, policy: ProxyHealthPolicy, proposal: Proposal, view: ClusterView | None = None
    ) -> Verdict: ...

    async def hold(
        self, policy: ProxyHealthPolicy, proposal: Proposal, verdict: Verdict, subject: ObjectRef
    ) -> None: ...

    async def issue(
        self,
        policy: ProxyHealthPolicy,
        draft: IntentDraft,
        proposal: Proposal,
        subject: ObjectRef,
        *,
        service: ServiceRef | None = None,
        target_nodes: int | None = None,
        view: ClusterView | None = None,
    ) -> bool: ...


class NodeRepairs:
    """Judges each node's report under each policy and acts through the decision path: intents for
    the agents, and kube-proxy restarts, which it carries out itself."""

    def __init__(
        self,
        cluster: Cluster,
        decider: Decider,
        recorder: EventRecorder,
        metrics: OperatorMetrics,
        pods: KubeClient,
        intent_ttl: timedelta,
    ) -> None:
        self.cluster = cluster
        self.decider = decider
        self.recorder = recorder
        self.metrics = metrics
        self.pods = pods
        """The API client, for kube-proxy's pods only: everything else goes through the decider."""
        self.intent_ttl = intent_ttl
        self._announced: set[tuple[str, str]] = set()
        self._judged: dict[str, tuple[ProxyHealthPolicy, dict[str, list[DriftFinding]]]] = {}
        """Policy name → (the policy judged with, node → its findings when last judged)."""
        self._stale: dict[str, set[str]] = {}
        """Policy name → nodes that look stale, kept by node between sweeps (the anomaly breaker's count)."""
        self._restarting: set[str] = set()
        """Nodes whose kube-proxy restart is being decided or carried out now."""
        self._issuing: set[tuple[str, FindingKey]] = set()
        """(policy, finding) whose intent is being created now: a report or a sweep that judges the
        node while the create is awaited must not issue a second intent for the same finding."""
        self._no_target = Backoff()
        """Nodes with no pod a restart could delete: looked at again with a growing back-off."""
        self._looks_stale: dict[str, set[str]] = {}
        """Policy name → nodes whose latest report shows a restart-worthy finding, evidence or not yet
        (sensed before the change it concerns, or not lasted the minimum observation)."""

    @classmethod
    def of(cls, controller: Controller) -> NodeRepairs:
        return cls(
            controller.cluster,
            controller,
            controller.recorder,
            controller.metrics,
            controller.client,
            controller.settings.intent_ttl,
        )

    async def on_report(self, node: str) -> None:
        """The node's report was accepted (``Controller.accept_report``): judge that node alone."""
        for policy_name, entry in list(self.cluster.policies.items()):
            await self.policy_nodes(policy_name, entry, only=node)

    def _findings(self, policy: ProxyHealthPolicy, ladder: Ladder, node: str) -> list[DriftFinding]:
        """The node's findings that its current report is evidence for (``causality.py``)."""
        status = self.cluster.healths.get(node)
        if status is None:
            return []
        evidence = self.cluster.evidence
        round_ = sensed(status)
        self._learn_service_removals(policy, ladder, node, status)
        ladder.verify_removals(node, round_, status.recent_results, self._intent_open)
        detected = detect(node, status, self.cluster.selected_vips(policy))
        silent = self.cluster.watch.finding(
            node, self.decider.now(), policy.spec.actions.restart_kube_proxy.stale_after
        )
        if silent is not None:
            detected.append(silent)
        suspects = self._looks_stale.setdefault(policy.metadata.name, set())
        if looks_stale(detected):
            suspects.add(node)
        else:
            suspects.discard(node)
        received = evidence.received.get(node)
        findings = policy_findings(
            policy,
            node,
            status,
            detected,
            held_for=self.decider.now() - received if received is not None else timedelta(0),
            evidence=lambda f: evidence.counts(node, status, f.service, f.backend),
        )
        return ladder.judge_removals(node, findings, round_)

    def _learn_service_removals(
        self, policy: ProxyHealthPolicy, ladder: Ladder, node: str, status: NodeProxyHealthStatus
    ) -> None:
        """A Service's flush intent removes its dead backends' real servers on every node. Until the
        node has verified that removal, a report that still shows one is no finding (sensed before
        the removal was applied); after it, one that is back is a stale real server again."""
        for result in status.recent_results:
            tracking = self.cluster.intents.get(result.intent)
            if tracking is None:
                continue
            spec = tracking.intent.spec
            if (
                spec.policy_name != policy.metadata.name
                or spec.service is None
                or FlushStep.REMOVE_REAL_SERVERS not in spec.steps
            ):
                continue
            service = f"{spec.service.namespace}/{spec.service.name}"
            for backend in spec.dead_backends:
                ladder.learn_removal(node, (service, backend), tracking.name, spec.decided_at)

    def _intent_open(self, name: str) -> bool:
        tracking = self.cluster.intents.get(name)
        return tracking is not None and not tracking.summarized

    async def sweep(self) -> None:
        """Re-judge every node against every policy: findings age even when no report changes."""
        self.settle_restarts()
        for name, entry in list(self.cluster.policies.items()):
            if entry.policy is not None:
                await self.policy_nodes(name, entry)

    async def policy_nodes(self, name: str, entry: PolicyEntry, only: str | None = None) -> None:
        policy = entry.policy
        if policy is None or entry.ladder is None or policy.paused:
            return
        now = self.decider.now()
        ladder = entry.ladder
        cached = self._judged.get(name)
        if only is None or cached is None or cached[0] is not policy:
            # A sweep (or the first report): judge every selected node afresh.
            nodes = self.cluster.selected_nodes(policy, now)
            findings = {node: self._findings(policy, ladder, node) for node in nodes}
        else:
            # One node reported: judge it, and take the others' findings from their last judgement
            # (their report or the last sweep, at most one housekeeping interval old). Judging every
            # node on every report made a rollout cost O(nodes²): 5,000 reports x 5,000 nodes.
            findings = cached[1]
            if self.cluster.node_selected(policy, only, now):
                findings[only] = self._findings(policy, ladder, only)
            else:
                findings.pop(only, None)
            nodes = []  # a report acts on its node only (below); the sweep's node list is not needed
        self._judged[name] = (policy, findings)
        if only is None or name not in self._stale:
            self._stale[name] = set(entry.ladder.restart_candidates(findings, now))
        else:
            # One node changed: only its standing can have changed since the last count.
            self._stale[name].discard(only)
            if only in findings:
                self._stale[name] |= entry.ladder.restart_candidates({only: findings[only]}, now)
        views = restart_views(
            len(findings),
            self._stale[name],
            self._looks_stale.get(name, set()) & findings.keys(),
            self.cluster.restarts,
        )
        await self._breaker(policy, entry, views.breaker)
        guarded = views.guarded
        for node in [only] if only is not None else nodes:
            if node not in findings:
                continue
            await self._announce(node, findings[node])
            entry.ladder.observe(node, findings[node], now)
            for step in entry.ladder.steps(node, findings[node], now):
                await self._run(policy, entry, step, guarded)
        if only is None:  # on sweeps only: nodes that report together then share one intent
            await self.udp_timeouts(policy, entry, nodes)

    async def _breaker(self, policy: ProxyHealthPolicy, entry: PolicyEntry, view: ClusterView) -> None:
        tripped = anomaly_tripped(policy, view)
        self.metrics.anomaly_breaker.labels(policy.metadata.name).set(1 if tripped else 0)
        self.metrics.stale_nodes.set(len(view.stale_nodes))
        if tripped == entry.breaker_tripped:
            return
        entry.breaker_tripped = tripped
        entry.status_dirty = True
        subject = policy_ref(policy)
        if tripped:
            await self.recorder.post(
                subject,
                reasons.ANOMALY_BREAKER_TRIPPED,
                f"{len(view.stale_nodes)} of {view.selected_nodes} nodes look stale at once "
                f"(threshold {policy.spec.guardrails.anomaly_threshold_percent}%): suspect the control plane "
                "or the network; every kube-proxy restart is held until fewer nodes look stale",
                EventKind.WARNING,
            )
        else:
            await self.recorder.post(
                subject, reasons.ANOMALY_BREAKER_RESET, "few enough nodes look stale: restarts resume"
            )

    async def _announce(self, node: str, findings: list[DriftFinding]) -> None:
        """One Warning Event per episode of a stale sync, a silent watch or a full conntrack table."""
        for kind, reason in (
            (FindingType.KUBE_PROXY_SYNC_STALE, reasons.KUBE_PROXY_SYNC_STALE),
            (FindingType.KUBE_PROXY_WATCH_SILENT, reasons.KUBE_PROXY_WATCH_SILENT),
            (FindingType.CONNTRACK_PRESSURE, reasons.CONNTRACK_PRESSURE),
        ):
            found = next((f for f in findings if f.type is kind and not f.backend), None)
            episode = (node, reason)
            if found is None:
                self._announced.discard(episode)
            elif episode not in self._announced:
                self._announced.add(episode)
                await self.recorder.post(self._node_ref(node), reason, found.message, EventKind.WARNING)

    def _node_ref(self, node: str) -> ObjectRef:
        return ObjectRef("v1", "Node", node, uid=self.cluster.node_uids.get(node))

    async def _run(
        self, policy: ProxyHealthPolicy, entry: PolicyEntry, step: Step, view: ClusterView
    ) -> None:
        assert entry.ladder is not None
        if step.kind is ActionKind.RESTART_KUBE_PROXY:
            if await self._restart(policy, entry, step, view):
                entry.ladder.acted(step, self.decider.now())
            return
        issuing = (policy.metadata.name, step.finding.key)
        if issuing in self._issuing:
            return  # the same finding's intent is being created: its step is not due twice
        draft = self._draft(policy, step)
        if draft is None:
            return
        kind = ActionKind.REMOVE_STALE_REAL_SERVER if step.remove_real_servers else step.kind
        proposal = Proposal(kind, step.node, step.since)
        subject = self._node_ref(step.node)
        service = step.finding.service
        self._issuing.add(issuing)
        try:
            if await self.decider.issue(
                policy, draft, proposal, subject, service=service, target_nodes=1, view=view
            ):
                entry.ladder.acted(step, self.decider.now(), intent=draft.name)
        finally:
            self._issuing.discard(issuing)

    def _draft(self, policy: ProxyHealthPolicy, step: Step) -> IntentDraft | None:
        now = self.decider.now()
        if step.kind is ActionKind.ENFORCE_SYSCTLS:
            enforce = policy.spec.actions.enforce_sysctls
            wanted = {}
            if enforce.expire_nodest_conn:
                wanted[names.EXPIRE_NODEST_CONN] = 1
            if enforce.expire_quiescent_template:
                wanted[names.EXPIRE_QUIESCENT_TEMPLATE] = 1
            if not wanted:
                return None
            return self._node_draft(
                policy,
                IntentAction.ENFORCE_SYSCTLS,
                f"{step.node}-sysctls",
                step.finding.message,
                [step.node],
                {"sysctls": wanted},
            )
        if step.kind is ActionKind.RAISE_CONNTRACK_MAX:
            return self._raise_conntrack_draft(policy, step)
        service_ref = step.finding.service
        if service_ref is None or step.finding.backend is None:
            return None
        service = self.cluster.services.get(service_ref)
        endpoints = self.cluster.endpoints.get(service_ref)
        if service is None or endpoints is None:
            return None
        return plan_backend_flush(
            policy,
            service,
            endpoints.ports_of([step.finding.backend]),
            frozenset({step.finding.backend}),
            endpoints.in_use(),
            now,
            node_names=[step.node],
            remove_real_servers=step.remove_real_servers,
            reason=f"on node {step.node}: {step.finding.message}",
            ttl=self.intent_ttl,
        )

    def _raise_conntrack_draft(self, policy: ProxyHealthPolicy, step: Step) -> IntentDraft | None:
        """One step up, by the policy's percentage, never beyond its ceiling."""
        action = policy.spec.actions.raise_conntrack_max
        status = self.cluster.healths.get(step.node)
        if status is None or status.conntrack is None or action.ceiling is None:
            return None
        current = status.conntrack.max
        target = min(action.ceiling, max(1024, current + max(1, current * action.step_percent // 100)))
        if target <= current:
            return None  # at the ceiling: the ConntrackPressure Event is all there is to do
        return self._node_draft(
            policy,
            IntentAction.RAISE_CONNTRACK_MAX,
            f"{step.node}-conntrack",
            step.finding.message,
            [step.node],
            {"conntrackMax": target},
        )

    def _node_draft(
        self,
        policy: ProxyHealthPolicy,
        action: IntentAction,
        prefix: str,
        reason: str,
        nodes: list[str],
        parameters: dict[str, object],
    ) -> IntentDraft:
        """An intent with parameters for named nodes (sysctls, conntrack max, UDP timeout)."""
        now = self.decider.now()
        spec = RemediationIntentSpec.model_validate(
            {
                "policyName": policy.metadata.name,
                "action": action,
                "reason": reason,
                "nodeNames": nodes,
                "dryRun": policy.spec.guardrails.dry_run,
                "decidedAt": now,
                "expiresAt": now + self.intent_ttl,
                "parameters": parameters,
            }
        )
        return IntentDraft(intent_name(prefix, ",".join(nodes), now.isoformat()), spec)

    async def _restart(
        self, policy: ProxyHealthPolicy, entry: PolicyEntry, step: Step, view: ClusterView
    ) -> bool:
        """Delete the node's kube-proxy pod if the guardrails allow; True when decided (done or dry-run).

        The sweep and a node's report run in different Kopf tasks and can both judge a node stale
        while one of them is still deleting its pod: the guardrails see that restart only once it is
        recorded, so the second judgement would delete nothing (the pod is gone) yet report a second
        restart. Only one restart of a node is decided at a time; the other judgement leaves it.
        """
        if step.node in self._restarting:
            return False
        self._restarting.add(step.node)
        try:
            return await self._restart_claimed(policy, entry, step, view)
        finally:
            self._restarting.discard(step.node)

    async def _restart_claimed(
        self, policy: ProxyHealthPolicy, entry: PolicyEntry, step: Step, view: ClusterView
    ) -> bool:
        """The decision itself, once this node's restart is claimed."""
        node = step.node
        if self._no_target.waiting(node, self.decider.now()):
            return False
        restarted = [
            r.at for r in entry.history if r.kind is ActionKind.RESTART_KUBE_PROXY and r.node == node
        ]
        if restarted and step.since < max(restarted):
            # Judged on a finding from before this node's last restart (a judgement that waited
            # for the claim): that restart answered it; holding it would only post a Warning.
            return False
        subject = self._node_ref(node)
        proposal = Proposal(ActionKind.RESTART_KUBE_PROXY, node, step.since)
        verdict = self.decider.guard(policy, proposal, view)
        if not verdict.allowed:
            await self.decider.hold(policy, proposal, verdict, subject)
            return False
        why = step.finding.message
        self.metrics.decisions.labels(str(proposal.kind), "dry_run" if verdict.dry_run else "issued").inc()
        if verdict.dry_run:
            entry.counters.dry_run_actions += 1
            entry.status_dirty = True
            await self.recorder.post(subject, reasons.DRY_RUN, f"would restart kube-proxy on {node}: {why}")
            return True
        target = policy.spec.actions.restart_kube_proxy.target
        try:
            pods, _ = await self.pods.list(
                PODS,
                target.namespace,
                label_selector=target.label_selector.to_query(),
                field_selector=f"spec.nodeName={node}",
            )
        except ApiError as exc:
            logger.warning("cannot list kube-proxy pods on %s: %s", node, exc)
            return False
        restartable, refused = split(pods)
        if not restartable:
            first, wait = self._no_target.missed(node, self.decider.now())
            if first and refused:  # one Warning per episode, not one per sweep
                await self.recorder.post(
                    subject,
                    reasons.KUBE_PROXY_NOT_RESTARTABLE,
                    f"{'; '.join(refused)}: kube-proxy on {node} was not restarted ({why}); looking again "
                    f"in {int(wait.total_seconds())} s, then less often",
                    EventKind.WARNING,
                )
            elif first:
                await self.recorder.post(
                    subject,
                    reasons.KUBE_PROXY_NOT_FOUND,
                    f"no pod matches {target.label_selector.to_query()} in {target.namespace} on {node}: "
                    f"kube-proxy was not restarted ({why}); looking again in {int(wait.total_seconds())} s, "
                    "then less often",
                    EventKind.WARNING,
                )
            return False
        self._no_target.found(node)
        deleted: list[str] = []
        for pod in restartable:
            meta = pod["metadata"]

            async def delete(meta: Mapping[str, Any] = meta) -> None:
                await self.pods.delete(PODS, meta["name"], meta.get("namespace"), uid=meta.get("uid"))

            try:
                await with_backoff(delete)
            except NotFoundError:
                continue
            except ApiError as exc:  # not restarted: the next sweep decides again, within the guardrails
                logger.warning("cannot delete kube-proxy pod %s on %s: %s", meta["name"], node, exc)
                return False
            deleted.append(meta["name"])
        if not deleted:
            # Gone before we deleted it: its DaemonSet is replacing it already, and this decision
            # restarted nothing. The next sweep judges the new kube-proxy's reports.
            logger.info("kube-proxy pods on %s were gone before their delete: no restart", node)
            return False
        now = self.decider.now()
        self.cluster.restarts[node] = now
        self.cluster.evidence.restarted(node)  # reports sensed before the restart no longer count
        entry.history.append(ActionRecord(ActionKind.RESTART_KUBE_PROXY, now, node))
        entry.counters.kube_proxy_restarts += 1
        entry.status_dirty = True
        self.metrics.kube_proxy_restarts.inc()
        await self.recorder.post(
            subject,
            reasons.KUBE_PROXY_RESTARTED,
            f"deleted kube-proxy pod {', '.join(deleted)} on {node}: {why} [policy {policy.metadata.name}]",
            EventKind.WARNING,
            annotations=restart_record(policy.metadata.name, node),
        )
        return True

    def settle_restarts(self) -> None:
        """Forget restarts whose kube-proxy reported a fresh sync in a round sensed after the restart
        (or that are older than RESTART_SETTLE, on the operator's clock, ``judgement.py``)."""
        now = self.decider.now()
        evidence = self.cluster.evidence
        for node, started in list(self.cluster.restarts.items()):
            status = self.cluster.healths.get(node)
            baseline = evidence.restarts.get(node)
            if baseline is None:  # read back from its Event by a restarted operator
                synced = synced_after(status, started)
            else:
                synced = status is not None and evidence.after(node, sensed(status), baseline)
            if restart_settled(status, synced, started, now):
                del self.cluster.restarts[node]

    async def udp_timeouts(self, policy: ProxyHealthPolicy, entry: PolicyEntry, nodes: list[str]) -> None:
        """Prevention: one intent for the nodes whose IPVS UDP timeout differs from the policy's."""
        action = policy.spec.actions.ipvs_udp_timeout
        if not action.enabled:
            return
        wanted = int(action.timeout.total_seconds())
        drifted = sorted(
            node
            for node in nodes
            if (status := self.cluster.healths.get(node)) is not None
            and status.ipvs is not None
            and status.ipvs.udp_timeout_seconds not in (None, wanted)
        )
        open_for = {
            node
            for tracking in self.cluster.intents.values()
            if tracking.intent.spec.action is IntentAction.SET_IPVS_UDP_TIMEOUT and not tracking.summarized
            for node in tracking.intent.spec.node_names
        }
        drifted = [node for node in drifted if node not in open_for]
        if not drifted:
            return
        draft = self._node_draft(
            policy,
            IntentAction.SET_IPVS_UDP_TIMEOUT,
            "udp-timeout",
            f"IPVS UDP timeout differs from {wanted}s on {len(drifted)} nodes",
            drifted,
            {"udpTimeoutSeconds": wanted},
        )
        subject = policy_ref(policy)
        await self.decider.issue(
            policy, draft, Proposal(ActionKind.SET_IPVS_UDP_TIMEOUT), subject, target_nodes=len(drifted)
        )


def policy_ref(policy: ProxyHealthPolicy) -> ObjectRef:
    """The policy as the subject of an Event."""
    return ObjectRef(API_VERSION, "ProxyHealthPolicy", policy.metadata.name, uid=policy.metadata.uid)
