"""A simulated kube-proxy for one node: programs the modelled IPVS from the cluster's EndpointSlices.

It syncs the way kube-proxy does in IPVS mode: changes are queued, and a sync at most every
``min_sync_period`` makes each virtual service's real servers exactly the in-use backends;
a periodic resync every ``sync_period`` re-applies its cache. It exports what the real one
exports to the agent's probe (sync timestamps, pending changes, healthz).

Two ways to break it, as seen in clusters:

* ``HUNG``: a sync never completes (a hung iptables-restore, a lock): changes pile up, the
  metrics show work queued after the last sync, and healthz turns 503.
* ``DEAD_WATCH``: its EndpointSlice watch died: it sees no change at all, keeps resyncing its
  stale cache (re-adding real servers that were removed), and healthz stays 200.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from proxymedic.dataplane.kubeproxy import FamilySync, Healthz, KubeProxyObservation, ProxyMode, SyncMetrics
from proxymedic.dataplane.types import Endpoint, L4Protocol, ServiceKey
from proxymedic.sim.kernel import ModelledNode

Desired = Mapping[ServiceKey, tuple[Endpoint, ...]]


class Stall(enum.Enum):
    NONE = "none"
    HUNG = "hung"
    DEAD_WATCH = "dead-watch"


@dataclass
class KubeProxySim:
    node: str
    model: ModelledNode
    min_sync_period: float = 1.0
    sync_period: float = 30.0
    stall: Stall = Stall.NONE
    cache: dict[ServiceKey, tuple[Endpoint, ...]] = field(default_factory=dict)
    """What this kube-proxy believes the Services are (stale when its watch is dead)."""
    last_sync: float = 0.0
    last_queued: float | None = None
    pending: int = 0
    restarts: int = 0
    syncs: int = 0
    """Syncs done (changes and periodic resyncs): a test waits for one to know a resync happened."""
    changes_total: int = 0
    """EndpointSlice events its watch delivered (``kubeproxy_sync_proxy_rules_endpoint_changes_total``):
    counted before anything is compared, as kube-proxy does; flat while the watch is dead."""
    started: float = 0.0
    """When this kube-proxy process started (``process_start_time_seconds``)."""

    def want(self, desired: Desired, now: float) -> None:
        """The cluster changed: what a healthy watch would deliver."""
        if self.stall is Stall.DEAD_WATCH:
            return
        self.changes_total += 1
        if dict(desired) == self.cache and not self.pending:
            return
        self.cache = dict(desired)
        self.pending += 1
        self.last_queued = now

    def tick(self, now: float) -> None:
        if self.stall is Stall.HUNG:
            return
        due_change = self.pending and now - self.last_sync >= self.min_sync_period
        due_resync = now - self.last_sync >= self.sync_period
        if due_change or due_resync:
            self.sync(now)

    def sync(self, now: float) -> None:
        """Make the modelled IPVS match the cache, as kube-proxy's syncProxyRules does."""
        programmed = {vs.key for vs in self.model.list_services()}
        for key, endpoints in self.cache.items():
            if key not in programmed:
                self.model.add_service(key)
            self.model.set_endpoints(key, endpoints)
        for key in programmed - set(self.cache):
            self.model.delete_service(key)
        self.last_sync = now
        self.pending = 0
        self.syncs += 1

    def restart(self, desired: Desired, now: float) -> None:
        """A new kube-proxy pod: a fresh watch, a full sync."""
        self.stall = Stall.NONE
        self.restarts += 1
        self.started = now
        self.changes_total = 1  # its initial list: one event per slice, and the sim has one
        self.cache = dict(desired)
        self.pending = 0
        self.sync(now)

    def observation(self, now: float) -> KubeProxyObservation:
        """What the agent's probe reads from :10249/metrics, /proxyMode and :10256/healthz."""
        waiting = self.last_queued is not None and self.last_queued > self.last_sync
        unhealthy = waiting and now - self.last_sync > 2 * self.sync_period
        return KubeProxyObservation(
            observed_at=now,
            metrics=SyncMetrics(
                families=(FamilySync("", self.last_sync, self.last_queued),),
                endpoint_changes_pending=float(self.pending),
                service_changes_pending=0.0,
                endpoint_changes_total=float(self.changes_total),
                process_start=self.started,
            ),
            mode=ProxyMode.IPVS,
            healthz=Healthz(status=503 if unhealthy else 200, last_updated=self.last_sync, current_time=now),
        )


def desired_state(
    services: Mapping[tuple[str, str], tuple[tuple[str, ...], tuple[tuple[int, int], ...]]],
    backends: Mapping[tuple[str, str], frozenset[str]],
) -> dict[ServiceKey, tuple[Endpoint, ...]]:
    """Virtual services and real servers for UDP Services: (VIPs, (port, targetPort)) and in-use backends."""
    result: dict[ServiceKey, tuple[Endpoint, ...]] = {}
    for ref, (vips, ports) in services.items():
        live = sorted(backends.get(ref, frozenset()), key=ipaddress.ip_address)
        for vip in vips:
            for port, target in ports:
                key = ServiceKey(L4Protocol.UDP, ipaddress.ip_address(vip), port)
                result[key] = tuple(Endpoint(ipaddress.ip_address(ip), target) for ip in live)
    return result
