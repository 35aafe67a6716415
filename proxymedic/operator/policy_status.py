"""A policy's status: conditions a user reads with kubectl, counters, and the last remediation."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime

from proxymedic.api.meta import Condition, ConditionStatus, resource_dict, set_condition
from proxymedic.api.policy import PolicyCounters, ProxyHealthPolicy, ProxyHealthPolicyStatus, SensingScope
from proxymedic.kube.client import ApiError, KubeClient, NotFoundError
from proxymedic.kube.events import EventRecorder
from proxymedic.kube.resources import POLICIES
from proxymedic.operator.planner import policy_covers
from proxymedic.operator.sensing_scope import sensing_scope
from proxymedic.operator.state import Cluster, PolicyEntry
from proxymedic.operator.sysctl_gaps import policy_condition

logger = logging.getLogger("proxymedic.operator")


def _condition(
    kind: str, ok: bool, reason: str, message: str, now: datetime, generation: int | None
) -> Condition:
    return Condition(
        type=kind,
        status=ConditionStatus.TRUE if ok else ConditionStatus.FALSE,
        reason=reason,
        message=message[:32768],
        last_transition_time=now,
        observed_generation=generation,
    )


class PolicyStatusWriter:
    def __init__(
        self, client: KubeClient, recorder: EventRecorder, cluster: Cluster, clock: Callable[[], datetime]
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.cluster = cluster
        self.now = clock
        self._conditions: dict[str, list[Condition]] = {}

    def build(self, name: str, entry: PolicyEntry) -> ProxyHealthPolicyStatus:
        now = self.now()
        generation = entry.generation
        conditions = self._conditions.get(name, [])
        policy = entry.policy
        if policy is None:
            conditions = set_condition(
                conditions, _condition("Accepted", False, "Invalid", "; ".join(entry.errors), now, generation)
            )
            conditions = set_condition(
                conditions,
                _condition("Active", False, "Invalid", "an invalid policy is not applied", now, generation),
            )
            self._conditions[name] = conditions
            # Nothing to look up for agents: an invalid policy governs no Service.
            return ProxyHealthPolicyStatus(
                observed_generation=generation, conditions=conditions, sensing=SensingScope()
            )

        conditions = set_condition(conditions, _condition("Accepted", True, "Valid", "", now, generation))
        paused = policy.paused
        enabled = policy.spec.actions.any_enabled()
        active_reason = "Paused" if paused else ("Enabled" if enabled else "NoActionsEnabled")
        active_message = {
            "Paused": "paused: nothing is decided",
            "Enabled": "dry-run: decisions are reported, nothing changes"
            if policy.spec.guardrails.dry_run
            else "",
            "NoActionsEnabled": "no action is enabled: the policy only observes",
        }[active_reason]
        conditions = set_condition(
            conditions,
            _condition("Active", enabled and not paused, active_reason, active_message, now, generation),
        )
        conditions = set_condition(
            conditions,
            _condition("Paused", paused, "Paused" if paused else "Running", "", now, generation),
        )
        degraded, reason, message = self._degraded(policy, entry)
        conditions = set_condition(
            conditions, _condition("Degraded", degraded, reason, message, now, generation)
        )
        conditions = set_condition(
            conditions, policy_condition(name, self.cluster.sysctl_gaps, now, generation)
        )
        self._conditions[name] = conditions
        selected = list(self.cluster.selected_services(policy))
        return ProxyHealthPolicyStatus(
            observed_generation=generation,
            conditions=conditions,
            selected_services=len(selected),
            selected_nodes=len(self.cluster.selected_nodes(policy, now)),
            counters=PolicyCounters(**dataclasses.asdict(entry.counters)),
            last_remediation=entry.last_remediation,
            sensing=sensing_scope(
                (
                    spec
                    for service in selected
                    if (spec := self.cluster.service_specs.get(service.ref)) is not None
                ),
                {str(protocol) for protocol in policy.spec.services.protocols},
            ),
        )

    def _degraded(self, policy: ProxyHealthPolicy, entry: PolicyEntry) -> tuple[bool, str, str]:
        if entry.breaker_tripped:
            return True, "AnomalyBreaker", "too many nodes look stale at once: kube-proxy restarts are held"
        overlapping = [
            str(service.ref)
            for service in self.cluster.services.values()
            if policy_covers(policy, service)
            and (governing := self.cluster.governing(service.ref)) is not None
            and governing.metadata.name != policy.metadata.name
        ]
        if overlapping:
            return (
                True,
                "Overlap",
                f"{len(overlapping)} Services are governed by another policy first by name: "
                + ", ".join(sorted(overlapping)[:5]),
            )
        return False, "Healthy", ""

    async def write(self, name: str, entry: PolicyEntry) -> None:
        """Write the status if something changed since the last write."""
        if not entry.status_dirty:
            return
        # Clear the flag before the write: a change made while the patch is in flight marks it again.
        entry.status_dirty = False
        status = self.build(name, entry)
        try:
            await self.client.patch(POLICIES, name, {"status": resource_dict(status)}, subresource="status")
        except NotFoundError:
            return
        except ApiError as exc:
            entry.status_dirty = True  # try again on the next sweep
            logger.warning("cannot write the status of policy %s: %s", name, exc)
