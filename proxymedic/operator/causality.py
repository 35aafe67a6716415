"""Which reports count as evidence against a change: ordered by the agents' sensing rounds, not clocks.

Each agent numbers its sensing rounds from 1 within an incarnation (one run of the agent) and
puts both in every report. When the operator makes or learns of a change (a backend becomes
live or dead, it restarts a node's kube-proxy), it keeps a *baseline*: the latest round it had
seen of each incarnation of each node. A report is evidence about the state after the change
only when it was sensed in a later round of the node's current incarnation at the change (the
one that appeared last), or in a later round than the first report the operator saw of an
incarnation that appeared after the change (that first report may have been sensed before the
change). An incarnation that an other one had replaced before the change never counts against
it, nor does a report without a round (an older agent). No timestamp of the agent is compared
with the operator's clock: they are two machines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from proxymedic.api.health import NodeProxyHealthStatus
from proxymedic.operator.backends import ServiceRef

MAX_INCARNATIONS = 4
"""Incarnations remembered per node: the current agent, and those a rolling update overlapped."""
DEAD_BACKEND_MEMORY = timedelta(minutes=30)
"""How long the baseline of a backend that left its Service is kept (pod IPs churn; the map must not grow)."""

Baseline = Mapping[str, Mapping[str, int]]
"""Node → incarnation → the latest round the operator had seen of it when the change happened."""


@dataclass(frozen=True)
class Sensed:
    """One sensing round of one agent incarnation."""

    incarnation: str
    round: int

    def after(self, other: Sensed | None) -> bool:
        """Sensed after ``other`` began: a later round of the same incarnation."""
        return other is not None and self.incarnation == other.incarnation and self.round > other.round


def sensed(status: NodeProxyHealthStatus) -> Sensed | None:
    if status.incarnation is None or status.round is None:
        return None
    return Sensed(status.incarnation, status.round)


def _bounded(rounds: dict[str, int]) -> dict[str, int]:
    while len(rounds) > MAX_INCARNATIONS:
        del rounds[next(iter(rounds))]  # in the order they appeared: the oldest incarnation goes
    return rounds


@dataclass
class Evidence:
    """The sensing rounds the operator has seen of each node, and its baselines of changes."""

    latest: dict[str, dict[str, int]] = field(default_factory=dict)
    """Node → incarnation (in the order they appeared) → the latest round seen. Replaced, never
    mutated: baselines share them."""
    first: dict[str, dict[str, int]] = field(default_factory=dict)
    """Node → incarnation → the first round the operator saw of it."""
    backends: dict[ServiceRef, dict[str, tuple[Baseline, datetime]]] = field(default_factory=dict)
    """Service → backend IP → the baseline when it last became live or dead, and when (operator
    clock). By Service, not by (Service, IP): every backend of the cluster has an entry, and a key
    tuple each cost more than the entry."""
    restarts: dict[str, Baseline] = field(default_factory=dict)
    """Node → the baseline when the operator last restarted its kube-proxy."""
    received: dict[str, datetime] = field(default_factory=dict)
    """Node → when the operator received its current report (operator clock): how long the report
    has been held is measured on one clock, as its age at sensing is on the node's."""

    def seen(self, node: str, status: NodeProxyHealthStatus, now: datetime) -> bool:
        """Record a report; False when it is older than one already seen of its incarnation (a
        lagging relist): judging it would go back in time."""
        round_ = sensed(status)
        if round_ is None:
            self.received[node] = now
            return True
        latest = self.latest.get(node, {})
        known = latest.get(round_.incarnation)
        if known is not None and round_.round < known:
            return False
        if known != round_.round:
            self.received[node] = now
            updated = dict(latest)  # an incarnation keeps its place: the last one is the current one
            updated[round_.incarnation] = round_.round
            self.latest[node] = _bounded(updated)
        first = self.first.setdefault(node, {})
        if round_.incarnation not in first:
            first[round_.incarnation] = round_.round
            _bounded(first)
        return True

    def forget_node(self, node: str) -> None:
        self.latest.pop(node, None)
        self.first.pop(node, None)
        self.received.pop(node, None)
        self.restarts.pop(node, None)

    def baseline(self) -> Baseline:
        return dict(self.latest)  # a shallow copy: the per-node maps are replaced, never changed

    def backends_changed(self, ref: ServiceRef, backends: Iterable[str], now: datetime) -> None:
        """These backends of the Service just became live or dead."""
        changed = list(backends)
        if changed:
            entry = (self.baseline(), now)  # one tuple for all: a Service lists many backends
            backends = self.backends.setdefault(ref, {})
            for backend in changed:
                backends[backend] = entry

    def restarted(self, node: str) -> None:
        self.restarts[node] = {node: self.latest.get(node, {})}

    def after(self, node: str, round_: Sensed | None, baseline: Baseline) -> bool:
        """Whether a report of this round was sensed after the change whose baseline is given."""
        if round_ is None:
            return False
        known = baseline.get(node, {})
        if round_.incarnation in known:
            # Only the incarnation that appeared last counts: a replaced agent's late writes do not.
            current = list(known)[-1]
            return round_.incarnation == current and round_.round > known[round_.incarnation]
        first = self.first.get(node, {}).get(round_.incarnation)  # appeared after the change
        return first is not None and round_.round > first

    def counts(
        self, node: str, status: NodeProxyHealthStatus, service: ServiceRef | None, backend: str | None
    ) -> bool:
        """Whether the report is evidence for a finding about this backend (or the whole node):
        sensed after the node's last kube-proxy restart and after the backend last changed."""
        round_ = sensed(status)
        restart = self.restarts.get(node)
        if restart is not None and not self.after(node, round_, restart):
            return False
        change = self.backends.get(service, {}).get(backend) if service is not None and backend else None
        return change is None or self.after(node, round_, change[0])

    def prune(self, live: Mapping[ServiceRef, frozenset[str]], now: datetime) -> None:
        """Forget the baselines of backends that left their Service long ago."""
        horizon = now - DEAD_BACKEND_MEMORY
        for ref, backends in list(self.backends.items()):
            in_use = live.get(ref, frozenset())
            for backend in [b for b, (_, at) in backends.items() if at < horizon and b not in in_use]:
                del backends[backend]
            if not backends:
                del self.backends[ref]
