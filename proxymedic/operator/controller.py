"""The operator's control loop: watched changes in, guarded intents, status and Events out.

Kopf handlers (``handlers.py``) call the ``*_event`` methods; every write goes through the
API client. Decisions come from the pure modules (planner, drift, guardrails, aggregation).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from pydantic import ValidationError

from proxymedic.api import reasons
from proxymedic.api.intent import (
    IntentAction,
    RemediationIntent,
    RemediationIntentSpec,
    RemediationIntentStatus,
)
from proxymedic.api.meta import API_VERSION, resource_dict
from proxymedic.api.policy import LastRemediation, ProxyHealthPolicy
from proxymedic.api.reasons import EventKind
from proxymedic.kube.client import ApiError, ConflictError, KubeClient, NotFoundError, with_backoff
from proxymedic.kube.events import EventRecorder, ObjectRef
from proxymedic.kube.resources import EVENTS, INTENTS
from proxymedic.operator.aggregation import IntentTracking, event_reason, summary_message
from proxymedic.operator.backends import ServiceRef
from proxymedic.operator.guardrails import (
    ActionKind,
    ActionRecord,
    ClusterView,
    Proposal,
    Verdict,
    action_enabled,
    evaluate,
)
from proxymedic.operator.judgement import RESTART_SETTLE
from proxymedic.operator.metrics import OperatorMetrics
from proxymedic.operator.planner import DEFAULT_INTENT_TTL, IntentDraft, flush_steps, plan_backend_flush
from proxymedic.operator.policy_status import PolicyStatusWriter
from proxymedic.operator.record import RESTARTED_REASON, restart_history
from proxymedic.operator.state import Cluster

logger = logging.getLogger("proxymedic.operator")

POLICY_LABEL = "proxymedic.io/policy"
SERVICE_LABEL = "proxymedic.io/service"
HOLD_EVENT_REPEAT = timedelta(minutes=5)


@dataclass
class ControllerSettings:
    coalesce_window: float = 0.05
    """Seconds to gather EndpointSlice changes of one Service into one decision."""
    intent_ttl: timedelta = DEFAULT_INTENT_TTL


class Controller:
    def __init__(
        self,
        client: KubeClient,
        recorder: EventRecorder,
        metrics: OperatorMetrics | None = None,
        settings: ControllerSettings | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.metrics = metrics or OperatorMetrics()
        self.settings = settings or ControllerSettings()
        self.now = clock
        self.cluster = Cluster()
        self.status = PolicyStatusWriter(client, recorder, self.cluster, clock)
        self._pending: dict[ServiceRef, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._holds_posted: dict[tuple[str, str, str], datetime] = {}
        self.sweeps_completed: collections.Counter[str] = collections.Counter()
        """Housekeeping sweeps run to the end, by policy. A caller that needs the operator to have
        judged every node again (a test asserting that nothing happened) waits for these to
        advance instead of sleeping."""

    async def restore_history(self, component: str) -> None:
        """Read back the restarts of the last hour from this operator's Events (operator/record.py).

        Without it a restarted operator would forget its cooldowns and budgets. A failure to read
        them is logged and the operator starts without: Kopf retries nothing here, and refusing to
        start would stop every repair.
        """
        try:
            events, _ = await with_backoff(
                lambda: self.client.list(EVENTS, field_selector=f"reason={RESTARTED_REASON}")
            )
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("cannot read past kube-proxy restarts from Events; budgets start empty: %s", exc)
            return
        now = self.now()
        restored = restart_history(events, component, now)
        self.cluster.restored_history = restored
        for record in (r for records in restored.values() for r in records):
            # A restart of the last minutes may still be in progress: MaxConcurrentRestarts and
            # RestartInProgress count it until its kube-proxy reports a sync made after it.
            if record.node is not None and now - record.at <= RESTART_SETTLE:
                self.cluster.restarts[record.node] = max(
                    record.at, self.cluster.restarts.get(record.node, record.at)
                )
        if restored:
            logger.info(
                "restored %d kube-proxy restarts of the last hour from Events",
                sum(len(records) for records in restored.values()),
            )

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)

    async def close(self, grace: float = 5.0) -> None:
        """Stop deciding, before the loop and the API client go away.

        Coalescing timers are dropped (the next operator judges those Services from its first
        list); decisions in flight get ``grace`` seconds to finish, so an intent is not left half
        written, then are cancelled. Without this a decision could outlive the client it writes
        with, or be destroyed unrun when the loop closes.
        """
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()
        if not self._tasks:
            return
        _, unfinished = await asyncio.wait(list(self._tasks), timeout=grace)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)

    async def drain(self) -> None:
        """Wait for decisions in flight (tests and shutdown)."""
        while self._pending or self._tasks:
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            else:  # coalescing timers are not awaitable: wait for them to turn into tasks
                await asyncio.sleep(self.settings.coalesce_window)

    # --- policies ----------------------------------------------------------------------

    async def policy_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        name = str(body["metadata"]["name"])
        before = self.cluster.policies.get(name)
        generation = before.generation if before is not None else None
        entry = self.cluster.set_policy(name, None if event_type == "DELETED" else body)
        if entry is None or entry.generation != generation:
            # A new, edited or deleted policy can change which policy governs a Service: every
            # policy's overlaps and selected Services, and the intents each may keep open.
            for other in self.cluster.policies.values():
                other.status_dirty = True
            for other_name, other in list(self.cluster.policies.items()):
                if other_name != name:
                    await self.withdraw_forbidden(other_name, other.policy)
        if entry is None:
            await self.withdraw_forbidden(name, None)
            return
        if entry.errors:
            await self.recorder.post(
                ObjectRef.of(dict(body)),
                reasons.POLICY_REJECTED,
                "invalid policy, not applied: " + "; ".join(entry.errors),
                EventKind.WARNING,
            )
        await self.withdraw_forbidden(name, entry.policy)
        await self.status.write(name, entry)

    async def withdraw_forbidden(self, name: str, policy: ProxyHealthPolicy | None) -> None:
        """Delete the policy's open intents that its new version forbids (deleted, invalid, paused,
        switched to dry-run, the action disabled, the Service no longer governed by it): an agent
        that has not applied one yet (down, restarting, slow) must not apply it after the edit."""
        for tracking in list(self.cluster.intents.values()):
            if tracking.intent.spec.policy_name != name or tracking.summarized:
                continue
            why = _forbidden_by(policy, tracking.intent.spec, self.cluster)
            if why is None:
                continue
            logger.info("intent %s withdrawn: %s", tracking.name, why)
            await self.finish(tracking, withdrawn=why)
            await self._delete_intent(tracking)

    # --- Services and their EndpointSlices ------------------------------------------------

    def service_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        named = ServiceRef(str(meta.get("namespace")), str(meta.get("name")))
        before = self.cluster.governing(named)
        ref = self.cluster.set_service(body, deleted=event_type == "DELETED")
        if ref is None:
            self.cluster.acted.pop(named, None)
        # The governing policies' status lists the virtual servers agents look up.
        for policy in (before, self.cluster.governing(named)):
            if policy is not None and (entry := self.cluster.policies.get(policy.metadata.name)):
                entry.status_dirty = True

    def slice_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        ref = self.cluster.set_slice(body, deleted=event_type == "DELETED", now=self.now())
        if ref is None or ref in self._pending:
            return
        loop = asyncio.get_running_loop()
        self._pending[ref] = loop.call_later(self.settings.coalesce_window, self._due, ref)

    def _due(self, ref: ServiceRef) -> None:
        self._pending.pop(ref, None)
        self.spawn(self.evaluate_service(ref))

    async def evaluate_service(self, ref: ServiceRef) -> None:
        """Compare the Service's in-use backends with those at the last decision, and act on the dead."""
        endpoints = self.cluster.endpoints.get(ref)
        if endpoints is None:
            return
        live = endpoints.in_use()
        before = self.cluster.acted.get(ref)
        self.cluster.acted[ref] = live
        await self._supersede(ref, live)
        if before is None:
            return  # first sight: nothing to compare with
        dead = before - live
        policy = self.cluster.governing(ref)
        service = self.cluster.services.get(ref)
        if not dead or policy is None or service is None:
            return
        now = self.now()
        subject = ObjectRef("v1", "Service", ref.name, ref.namespace, service.uid)
        # One intent per set of port numbers: an intent names one real-server port per Service port.
        for ports, group in endpoints.by_ports(dead):
            draft = plan_backend_flush(policy, service, ports, group, live, now, ttl=self.settings.intent_ttl)
            if draft is not None:
                await self.issue(
                    policy, draft, Proposal(ActionKind.FLUSH_STALE_BACKENDS), subject, service=ref
                )

    async def _supersede(self, ref: ServiceRef, live: frozenset[str]) -> None:
        """Delete open intents that call a backend dead which is live again (its IP came back)."""
        for tracking in list(self.cluster.intents.values()):
            spec = tracking.intent.spec
            if spec.service is None or (spec.service.namespace, spec.service.name) != (
                ref.namespace,
                ref.name,
            ):
                continue
            if tracking.summarized or not live & set(spec.dead_backends):
                continue
            await self._delete_intent(tracking)
            logger.info(
                "intent %s superseded: %s is live again", tracking.name, live & set(spec.dead_backends)
            )

    # --- issuing intents -------------------------------------------------------------------

    def cluster_view(self, policy: ProxyHealthPolicy, stale: frozenset[str] = frozenset()) -> ClusterView:
        return ClusterView(
            selected_nodes=len(self.cluster.selected_nodes(policy, self.now())),
            stale_nodes=stale,
            restarts_in_progress=frozenset(self.cluster.restarts),
        )

    def guard(
        self, policy: ProxyHealthPolicy, proposal: Proposal, view: ClusterView | None = None
    ) -> Verdict:
        name = policy.metadata.name
        entry = self.cluster.policies[name]
        others = [r for other, e in self.cluster.policies.items() if other != name for r in e.history]
        return evaluate(
            policy,
            proposal,
            entry.history,
            view or self.cluster_view(policy),
            self.now(),
            other_policies=others,
        )

    async def hold(
        self, policy: ProxyHealthPolicy, proposal: Proposal, verdict: Verdict, subject: ObjectRef
    ) -> None:
        """Report a held decision: a RemediationHeld Event naming the rule, at most every few minutes."""
        assert verdict.rule is not None
        entry = self.cluster.policies[policy.metadata.name]
        entry.counters.actions_held += 1
        entry.status_dirty = True
        self.metrics.holds.labels(str(verdict.rule)).inc()
        self.metrics.decisions.labels(str(proposal.kind), "held").inc()
        key = (subject.name, str(proposal.kind), str(verdict.rule))
        now = self.now()
        last = self._holds_posted.get(key)
        if last is not None and now - last < HOLD_EVENT_REPEAT:
            return
        self._holds_posted[key] = now
        await self.recorder.post(
            subject,
            reasons.REMEDIATION_HELD,
            f"{verdict.rule}: {verdict.message} [policy {policy.metadata.name}]",
            EventKind.WARNING,
        )

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
    ) -> bool:
        """Guard the decision and create its intent; False when held. A sweep passes the view it
        computed once: computing it again for each node's step made the sweep quadratic."""
        verdict = self.guard(policy, proposal, view)
        if not verdict.allowed:
            await self.hold(policy, proposal, verdict, subject)
            return False
        entry = self.cluster.policies[policy.metadata.name]
        labels = {POLICY_LABEL: policy.metadata.name}
        if service is not None:
            labels[SERVICE_LABEL] = f"{service.namespace}.{service.name}"[:63]
        body = {
            "apiVersion": API_VERSION,
            "kind": "RemediationIntent",
            "metadata": {"name": draft.name, "labels": labels},
            "spec": resource_dict(draft.spec),
        }
        try:
            # A throttled or failing API server must not lose a decision: retry, as it asks.
            created = await with_backoff(lambda: self.client.create(INTENTS, body))
        except ConflictError:
            return True  # decided already, by this operator or one before it (or by a retried create)
        intent = RemediationIntent.model_validate(created)
        targets = target_nodes if target_nodes is not None else self._count_targets(policy, draft.spec)
        tracking = self._track(intent, targets)
        logger.info(
            "intent %s issued%s: %s for %s %s, %d target node(s) [policy %s]",
            draft.name,
            " (dry-run)" if draft.spec.dry_run else "",
            proposal.kind,
            subject.kind,
            f"{subject.namespace}/{subject.name}" if subject.namespace else subject.name,
            targets,
            policy.metadata.name,
        )
        self.metrics.decisions.labels(str(proposal.kind), "dry_run" if draft.spec.dry_run else "issued").inc()
        self.metrics.open_intents.set(sum(1 for t in self.cluster.intents.values() if not t.summarized))
        entry.counters.intents_issued += 1
        entry.status_dirty = True
        if not draft.spec.dry_run:
            entry.history.append(ActionRecord(proposal.kind, self.now(), proposal.node))
        await self._write_intent_status(tracking)
        if tracking.complete():
            await self.finish(tracking)
        return True

    def _count_targets(self, policy: ProxyHealthPolicy, spec: RemediationIntentSpec) -> int:
        if not spec.all_nodes:
            return len(spec.node_names)
        now = self.now()
        return sum(
            1
            for node in self.cluster.selected_nodes(policy, now)
            if spec.addresses(node, self.cluster.nodes.get(node, {}))
        )

    # --- intents and their results ---------------------------------------------------------

    async def intent_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Rebuild the tracking of intents after a restart; forget deleted ones."""
        name = str(body["metadata"]["name"])
        if event_type == "DELETED":
            self.cluster.intents.pop(name, None)
            return
        if name in self.cluster.intents:
            return
        try:
            intent = RemediationIntent.model_validate(body)
        except ValidationError:
            return
        status = intent.status or RemediationIntentStatus()
        policy_entry = self.cluster.policies.get(intent.spec.policy_name)
        policy = policy_entry.policy if policy_entry else None
        targets = status.target_nodes
        if targets is None:
            targets = self._count_targets(policy, intent.spec) if policy else len(intent.spec.node_names)
        tracking = self._track(intent, targets, summarized=status.completed_at is not None)
        if tracking.complete() and not tracking.summarized:
            await self.finish(tracking)

    def _track(self, intent: RemediationIntent, targets: int, summarized: bool = False) -> IntentTracking:
        """Start tracking an intent with the results nodes have already reported: agents can apply an
        intent and report before the operator has even read the answer to creating it."""
        tracking = IntentTracking(intent, targets, summarized=summarized)
        self.cluster.intents[intent.metadata.name] = tracking
        for node, health in self.cluster.healths.items():
            for result in health.recent_results:
                if result.intent == tracking.name and result.intent_uid in (None, intent.metadata.uid):
                    tracking.record(node, result)
        return tracking

    async def accept_report(self, node: str, raw: Mapping[str, Any] | None) -> bool:
        """A node's NodeProxyHealth changed (None: deleted): keep it and collect its intent results;
        True when there is a report to judge (a report the models reject is no evidence)."""
        if self.cluster.set_health(node, raw, self.now()) is None:
            return False
        await self.collect_results(node)
        return True

    async def collect_results(self, node: str) -> None:
        health = self.cluster.healths.get(node)
        if health is None:
            return
        for result in health.recent_results:
            tracking = self.cluster.intents.get(result.intent)
            if tracking is None or tracking.summarized:
                continue
            if result.intent_uid not in (None, tracking.intent.metadata.uid):
                continue
            if tracking.record(node, result):
                self.metrics.intent_outcomes.labels(
                    str(tracking.intent.spec.action), str(result.outcome)
                ).inc()
            if tracking.complete():
                await self.finish(tracking)

    async def finish(self, tracking: IntentTracking, *, expired: bool = False, withdrawn: str = "") -> None:
        """Write the intent's final status and post its one summary Event."""
        if tracking.summarized:
            return
        tracking.summarized = True
        spec = tracking.intent.spec
        counts = tracking.counts()
        duration = tracking.duration_seconds()
        if duration is not None and tracking.complete():
            self.metrics.intent_latency.labels(str(spec.action)).observe(duration)
        self.metrics.open_intents.set(sum(1 for t in self.cluster.intents.values() if not t.summarized))
        await self._write_intent_status(tracking, completed=True)
        message = summary_message(tracking)
        if expired and not tracking.complete():
            message += f"; {tracking.target_nodes - len(tracking.results)} nodes did not report before expiry"
        if withdrawn:
            message += f"; withdrawn before every node applied it: {withdrawn}"
        reason = event_reason(tracking.intent, counts)
        failed = counts.failed or counts.refused or (expired and not tracking.complete())
        subject = self._subject_of(tracking)
        await self.recorder.post(subject, reason, message, EventKind.WARNING if failed else EventKind.NORMAL)
        entry = self.cluster.policies.get(spec.policy_name)
        if entry is not None:
            entry.counters.actions_applied += counts.applied
            entry.counters.dry_run_actions += counts.dry_run
            entry.last_remediation = LastRemediation(
                time=self.now(),
                action=reason,
                target=f"{subject.kind} {subject.name}"[:512],
                message=message[:1024],
            )
            entry.status_dirty = True

    def _subject_of(self, tracking: IntentTracking) -> ObjectRef:
        spec = tracking.intent.spec
        if spec.service is not None:
            ref = ServiceRef(spec.service.namespace, spec.service.name)
            info = self.cluster.services.get(ref)
            return ObjectRef("v1", "Service", ref.name, ref.namespace, info.uid if info else None)
        if len(spec.node_names) == 1:
            return ObjectRef("v1", "Node", spec.node_names[0])
        return ObjectRef(API_VERSION, "RemediationIntent", tracking.name, uid=tracking.intent.metadata.uid)

    async def _write_intent_status(self, tracking: IntentTracking, completed: bool = False) -> None:
        duration = tracking.duration_seconds()
        status = RemediationIntentStatus(
            target_nodes=tracking.target_nodes,
            reported_nodes=len(tracking.results),
            outcomes=tracking.counts(),
            completed_at=self.now() if completed else None,
            duration_seconds=duration if completed else None,
        )
        try:
            await self.client.patch(
                INTENTS, tracking.name, {"status": resource_dict(status)}, subresource="status"
            )
        except NotFoundError:
            pass
        except ApiError as exc:
            logger.warning("cannot write the status of intent %s: %s", tracking.name, exc)

    # --- housekeeping ------------------------------------------------------------------------

    async def expire_intents(self) -> None:
        """Summarize intents that expired before every node reported, and delete expired ones."""
        now = self.now()
        for tracking in list(self.cluster.intents.values()):
            if tracking.intent.spec.expires_at > now:
                continue
            await self.finish(tracking, expired=True)
            await self._delete_intent(tracking)

    async def _delete_intent(self, tracking: IntentTracking) -> None:
        with contextlib.suppress(NotFoundError):
            await self.client.delete(INTENTS, tracking.name, uid=tracking.intent.metadata.uid)
        self.cluster.intents.pop(tracking.name, None)


_INTENT_ACTIONS = {
    IntentAction.SET_IPVS_UDP_TIMEOUT: ActionKind.SET_IPVS_UDP_TIMEOUT,
    IntentAction.ENFORCE_SYSCTLS: ActionKind.ENFORCE_SYSCTLS,
    IntentAction.RAISE_CONNTRACK_MAX: ActionKind.RAISE_CONNTRACK_MAX,
}


def _forbidden_by(
    policy: ProxyHealthPolicy | None, spec: RemediationIntentSpec, cluster: Cluster
) -> str | None:
    """Why the policy, as it is now, would not have issued this intent; None when it still would."""
    if policy is None:
        return f"policy {spec.policy_name} was deleted or is invalid"
    if policy.paused:
        return f"policy {spec.policy_name} is paused"
    if policy.spec.guardrails.dry_run and not spec.dry_run:
        return f"policy {spec.policy_name} switched to dry-run"
    if spec.action is IntentAction.FLUSH_STALE_BACKENDS:
        allowed = set(flush_steps(policy, remove_real_servers=True))
        if not set(spec.steps) <= allowed:
            return (
                f"policy {spec.policy_name} no longer enables {', '.join(sorted(set(spec.steps) - allowed))}"
            )
    elif (kind := _INTENT_ACTIONS.get(spec.action)) is not None and not action_enabled(policy, kind):
        return f"policy {spec.policy_name} no longer enables {kind}"
    if spec.service is not None:
        governing = cluster.governing(ServiceRef(spec.service.namespace, spec.service.name))
        if governing is None or governing.metadata.name != policy.metadata.name:
            return f"policy {spec.policy_name} no longer governs {spec.service.namespace}/{spec.service.name}"
    return None


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("operator task %s failed", task.get_name(), exc_info=task.exception())
