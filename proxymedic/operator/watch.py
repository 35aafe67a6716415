"""Is each node's kube-proxy still hearing the API server? Its count of EndpointSlice events, compared
across nodes.

kube-proxy counts every EndpointSlice event its informer delivers
(``kubeproxy_sync_proxy_rules_endpoint_changes_total``, counted before anything is compared). A
kube-proxy whose watch died silently keeps its rules, answers healthz 200 and, in IPVS mode, keeps
its sync timestamp fresh with periodic resyncs: only this counter stops. It still rises at its
informers' periodic resync (every 15 minutes by default), so "flat for long" proves nothing; "flat
across a change the other kube-proxies counted" does.

A *probe* is an EndpointSlice change the operator saw: the slice's generation rose (a relist
replaying a known version is none), at ``at`` on the operator's clock. For each node:

- *before*: the counter in its latest report received at least ``MARGIN`` before ``at``: sensed
  before the change reached any kube-proxy, unless the operator's own watch lagged by more than
  that (then the other nodes look as if they missed it too, and nobody is found);
- *after*: the counter in a report sensed in a later round than the latest the operator had seen
  ``SETTLE`` after ``at`` (sensing rounds, ``causality.py``: no agent clock is compared with the
  operator's);
- the node *heard* the probe when after > before in the same kube-proxy process (the same start
  time, the counter never lower), *missed* it when after == before; anything else (no counter, a
  restarted kube-proxy, no report) is no verdict.

A node is *silent* when it missed a probe that a strict majority of the other nodes that had a
*before* heard, its counter has not moved since in the same process, and the policy's
``staleAfter`` has passed since the probe. Its kube-proxy's rules are then its cache's, whatever its
healthz says. ``KubeProxyWatchSilent`` is restart-worthy, and counted by the anomaly breaker like
every stale node: many silent nodes at once point at the API server or the network.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from proxymedic.api.health import FindingType, NodeProxyHealthStatus
from proxymedic.operator.causality import Baseline, Evidence, Sensed, sensed
from proxymedic.operator.drift import DriftFinding

logger = logging.getLogger("proxymedic.operator")

MARGIN = timedelta(seconds=10)
"""How far the operator's watch may lag the kube-proxies' before a probe proves nothing."""
SETTLE = timedelta(seconds=10)
"""How long after a probe every live kube-proxy has counted it (its informer's delivery, the
agent's next sensing round)."""
PROBE_SPACING = timedelta(seconds=5)
"""Changes closer together than this are one probe: a rollout makes hundreds."""
MAX_PROBES = 16
HISTORY = 2 * MARGIN
"""Reports kept per node: enough to find the one received ``MARGIN`` before a probe."""


@dataclass(frozen=True)
class Count:
    """One report's counter of EndpointSlice events, in one kube-proxy process."""

    value: int
    process: datetime | None
    """kube-proxy's start time; None when it exports none (a lower counter still marks a restart)."""
    received: datetime
    """When the operator received the report (operator clock)."""

    def same_process(self, later: Count) -> bool:
        return self.process == later.process and later.value >= self.value


@dataclass
class Probe:
    at: datetime
    before: dict[str, Count]
    baseline: Baseline | None = None
    """The rounds seen ``SETTLE`` after ``at``; None until then."""
    undecided: set[str] = field(default_factory=set)
    heard: set[str] = field(default_factory=set)
    missed: set[str] = field(default_factory=set)

    @property
    def confirmed(self) -> bool:
        """A strict majority of the nodes that had a *before* heard it, besides the one judged."""
        return 2 * len(self.heard) > len(self.before) - 1


@dataclass(frozen=True)
class Silence:
    """A node's counter that stayed flat across a probe the others counted."""

    probe_at: datetime
    count: Count
    heard: int
    others: int


@dataclass
class WatchLiveness:
    """The counters of every node's kube-proxy, and the probes they are judged by."""

    history: dict[str, deque[Count]] = field(default_factory=dict)
    probes: deque[Probe] = field(default_factory=lambda: deque(maxlen=MAX_PROBES))
    silences: dict[str, Silence] = field(default_factory=dict)
    """Node → the first confirmed probe it missed, kept while its counter stays where it was."""

    def slice_changed(self, now: datetime) -> None:
        """An EndpointSlice's generation rose: every live kube-proxy will count it."""
        if self.probes and now - self.probes[-1].at < PROBE_SPACING:
            return
        cutoff = now - MARGIN
        before: dict[str, Count] = {}
        for node, counts in self.history.items():
            earlier = [count for count in counts if count.received <= cutoff]
            if earlier:
                before[node] = earlier[-1]
        if before:
            self.probes.append(Probe(now, before, undecided=set(before)))
            logger.debug("EndpointSlice change: probing the counters of %d kube-proxies", len(before))

    def reported(self, node: str, status: NodeProxyHealthStatus, now: datetime, evidence: Evidence) -> None:
        """A report was accepted (``Evidence.seen``): record its counter, and decide the probes it answers."""
        self._settle(now, evidence)
        state = status.kube_proxy
        if state.endpoint_changes_total is None:
            self.forget(node)  # no counter: nothing to compare, and no silence to keep
            return
        count = Count(state.endpoint_changes_total, state.started_at, now)
        counts = self.history.setdefault(node, deque())
        if counts and not counts[-1].same_process(count):
            counts.clear()  # a new kube-proxy: its counter starts over
        counts.append(count)
        while len(counts) > 2 and counts[1].received <= now - HISTORY:
            counts.popleft()  # keep the newest one old enough to be a probe's *before*
        silence = self.silences.get(node)
        if silence is not None and not (
            silence.count.same_process(count) and count.value == silence.count.value
        ):
            del self.silences[node]
        round_ = sensed(status)
        for probe in self.probes:
            if node in probe.undecided and probe.baseline is not None:
                self._decide(probe, node, count, round_, evidence)

    def _settle(self, now: datetime, evidence: Evidence) -> None:
        for probe in self.probes:
            if probe.baseline is None and now - probe.at >= SETTLE:
                probe.baseline = evidence.baseline()

    def _decide(
        self, probe: Probe, node: str, count: Count, round_: Sensed | None, evidence: Evidence
    ) -> None:
        assert probe.baseline is not None
        if not evidence.after(node, round_, probe.baseline):
            return  # sensed before the change had time to land: wait for a later round
        probe.undecided.discard(node)
        before = probe.before[node]
        if not before.same_process(count):
            return  # restarted in between: no verdict
        if count.value > before.value:
            was = probe.confirmed
            probe.heard.add(node)
            if probe.confirmed and not was:  # once per probe: every node that missed it is silent
                for silent in probe.missed:
                    self._silent(silent, probe)
        else:
            probe.missed.add(node)
            if probe.confirmed:
                self._silent(node, probe)

    def _silent(self, node: str, probe: Probe) -> None:
        """Keep the first confirmed probe the node missed, while its counter has not moved since."""
        before = probe.before[node]
        counts = self.history.get(node)
        if node in self.silences or not counts:
            return
        current = counts[-1]
        if before.same_process(current) and current.value == before.value:
            self.silences[node] = Silence(probe.at, before, len(probe.heard), len(probe.before) - 1)
            logger.info(
                "kube-proxy on %s counted no EndpointSlice change since %s; %d of %d other nodes did",
                node,
                probe.at.isoformat(timespec="seconds"),
                len(probe.heard),
                len(probe.before) - 1,
            )

    def forget(self, node: str) -> None:
        self.history.pop(node, None)
        self.silences.pop(node, None)
        for probe in self.probes:
            probe.undecided.discard(node)

    def finding(self, node: str, now: datetime, stale_after: timedelta) -> DriftFinding | None:
        """``KubeProxyWatchSilent`` once the node has been silent for ``stale_after``; None otherwise."""
        silence = self.silences.get(node)
        if silence is None or now - silence.probe_at < stale_after:
            return None
        waited = int((now - silence.probe_at).total_seconds())
        return DriftFinding(
            node,
            FindingType.KUBE_PROXY_WATCH_SILENT,
            f"kube-proxy has counted no EndpointSlice change for {waited} s: its counter stayed at "
            f"{silence.count.value} across a change that {silence.heard} of {silence.others} other "
            "nodes' kube-proxies counted. Its watch of the API server looks dead; its healthz cannot "
            "show this",
        )
