"""Aggregate the per-node results of an intent into its status and one summary Event (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from proxymedic.api import reasons
from proxymedic.api.health import IntentResult
from proxymedic.api.intent import FlushStep, IntentAction, IntentOutcome, OutcomeCounts, RemediationIntent
from proxymedic.api.types import format_elapsed


@dataclass
class IntentTracking:
    """What the operator knows of one intent while agents report on it."""

    intent: RemediationIntent
    target_nodes: int
    results: dict[str, IntentResult] = field(default_factory=dict)
    summarized: bool = False

    @property
    def name(self) -> str:
        return self.intent.metadata.name

    def record(self, node: str, result: IntentResult) -> bool:
        """Take a node's result; False if that node had already reported it."""
        if node in self.results:
            return False
        self.results[node] = result
        return True

    def counts(self) -> OutcomeCounts:
        tally = dict.fromkeys(IntentOutcome, 0)
        for result in self.results.values():
            tally[result.outcome] += 1
        return OutcomeCounts(
            applied=tally[IntentOutcome.APPLIED],
            already_clean=tally[IntentOutcome.ALREADY_CLEAN],
            dry_run=tally[IntentOutcome.DRY_RUN],
            refused=tally[IntentOutcome.REFUSED],
            failed=tally[IntentOutcome.FAILED],
        )

    def complete(self) -> bool:
        return len(self.results) >= self.target_nodes

    def finished_at(self) -> datetime | None:
        return max((result.completed_at for result in self.results.values()), default=None)

    def duration_seconds(self) -> float | None:
        finished = self.finished_at()
        if finished is None:
            return None
        return max(0.0, (finished - self.intent.spec.decided_at).total_seconds())


def event_reason(intent: RemediationIntent, counts: OutcomeCounts) -> str:
    spec = intent.spec
    if spec.dry_run:
        return reasons.DRY_RUN
    if counts.failed or counts.refused:
        return reasons.REMEDIATION_FAILED
    match spec.action:
        case IntentAction.FLUSH_STALE_BACKENDS:
            if FlushStep.REMOVE_REAL_SERVERS in spec.steps and not spec.all_nodes:
                return reasons.STALE_REAL_SERVER_REMOVED
            return reasons.STALE_CONNECTIONS_FLUSHED
        case IntentAction.SET_IPVS_UDP_TIMEOUT:
            return reasons.UDP_TIMEOUT_SET
        case IntentAction.ENFORCE_SYSCTLS:
            return reasons.SYSCTLS_ENFORCED
        case IntentAction.RAISE_CONNTRACK_MAX:
            return reasons.CONNTRACK_MAX_RAISED


def summary_message(tracking: IntentTracking) -> str:
    """One line that says what was done, to which backend, on how many nodes, and how long it took."""
    spec = tracking.intent.spec
    counts = tracking.counts()
    results = tracking.results.values()
    totals = {
        ("connection flushed", "connections flushed"): sum(r.flushed_connections for r in results),
        ("real server removed", "real servers removed"): sum(r.removed_real_servers for r in results),
        ("conntrack entry deleted", "conntrack entries deleted"): sum(
            r.deleted_conntrack_entries for r in results
        ),
    }
    what = ", ".join(
        f"{count} {one if count == 1 else many}" for (one, many), count in totals.items() if count
    )
    if not what:
        changed = [r.message for r in tracking.results.values() if r.outcome is IntentOutcome.APPLIED]
        what = changed[0] if changed else "nothing to change"
    if spec.dry_run:
        what = f"nothing changed, would have: {what}"
    if spec.service is not None:
        vips = ",".join(spec.service.cluster_ips)
        ports = ",".join(f"{port.port}/{port.protocol}" for port in spec.service.ports)
        service = f"{spec.service.namespace}/{spec.service.name}"
        subject = f"{', '.join(spec.dead_backends)} left {service} ({vips}:{ports})"
    else:
        subject = str(spec.action)
    nodes = (
        f"{counts.applied} of {tracking.target_nodes} nodes changed, {counts.already_clean} already clean"
        if not spec.dry_run
        else f"{counts.dry_run} of {tracking.target_nodes} nodes would act (dry-run)"
    )
    if counts.failed or counts.refused:
        nodes += f", {counts.failed} failed, {counts.refused} refused"
        failures = [
            f"{node}: {r.message}"
            for node, r in sorted(tracking.results.items())
            if r.outcome in (IntentOutcome.FAILED, IntentOutcome.REFUSED)
        ]
        nodes += f" ({'; '.join(failures[:3])})"
    duration = tracking.duration_seconds()
    took = f" in {format_duration_seconds(duration)}" if duration is not None else ""
    return f"{subject}: {what}; {nodes}{took} [intent {tracking.name}]"


def format_duration_seconds(seconds: float) -> str:
    return format_elapsed(timedelta(seconds=seconds))
