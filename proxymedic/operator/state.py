"""What the operator has seen of the cluster, in memory: rebuilt from the watches after a restart.

Nothing here talks to the API server; the handlers feed it and the controller queries it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from proxymedic.api.errors import describe_errors
from proxymedic.api.health import NodeProxyHealth, NodeProxyHealthStatus
from proxymedic.api.policy import LastRemediation, ProxyHealthPolicy
from proxymedic.expectation import NodeSpec, ServiceSpec
from proxymedic.expectation import parse_node as parse_node_spec
from proxymedic.expectation import parse_service as parse_service_spec
from proxymedic.expectation import parse_slice as parse_slice_spec
from proxymedic.operator.aggregation import IntentTracking
from proxymedic.operator.backends import (
    ServiceEndpoints,
    ServiceInfo,
    ServiceRef,
    parse_service,
    parse_slice,
    resolve_target_port,
    share,
)
from proxymedic.operator.causality import Evidence
from proxymedic.operator.drift import Ladder, SelectedVip, Selection, VipKey
from proxymedic.operator.expected import NodeSelection
from proxymedic.operator.guardrails import HOUR, ActionRecord
from proxymedic.operator.held import HeldSlice
from proxymedic.operator.planner import covering_policy
from proxymedic.operator.sysctl_gaps import SysctlGap
from proxymedic.operator.watch import WatchLiveness

AGENT_SILENT_AFTER = timedelta(minutes=15)


class _SliceVersion(enum.Enum):
    OLDER = "older"
    CHANGED = "changed"
    UNKNOWN = "unknown"
    """First sight (maybe a relist), a replay of the held version, or no version to compare."""


"""An agent that has not reported for this long is not counted as a target of new intents."""


@dataclass
class Counters:
    intents_issued: int = 0
    actions_applied: int = 0
    actions_held: int = 0
    dry_run_actions: int = 0
    kube_proxy_restarts: int = 0


@dataclass
class PolicyEntry:
    policy: ProxyHealthPolicy | None
    """None while the latest version is invalid: an invalid policy is never half-applied."""
    errors: list[str] = field(default_factory=list)
    generation: int | None = None
    ladder: Ladder | None = None
    history: list[ActionRecord] = field(default_factory=list)
    breaker_tripped: bool = False
    status_dirty: bool = True
    counters: Counters = field(default_factory=Counters)
    last_remediation: LastRemediation | None = None


@dataclass
class Cluster:
    policies: dict[str, PolicyEntry] = field(default_factory=dict)
    services: dict[ServiceRef, ServiceInfo] = field(default_factory=dict)
    endpoints: dict[ServiceRef, ServiceEndpoints] = field(default_factory=dict)
    acted: dict[ServiceRef, frozenset[str]] = field(default_factory=dict)
    """The in-use backends of each Service when the operator last decided about it."""
    nodes: dict[str, Mapping[str, str]] = field(default_factory=dict)
    """Node name → labels."""
    service_specs: dict[ServiceRef, ServiceSpec] = field(default_factory=dict)
    held_slices: dict[tuple[ServiceRef, str], HeldSlice] = field(default_factory=dict)
    node_specs: dict[str, NodeSpec] = field(default_factory=dict)
    """Services, EndpointSlices and Nodes as kube-proxy reads them: what each node should have.
    The slices compact (operator/held.py): their SliceSpec is built for the selected ones only."""
    node_uids: dict[str, str] = field(default_factory=dict)
    healths: dict[str, NodeProxyHealthStatus] = field(default_factory=dict)
    evidence: Evidence = field(default_factory=Evidence)
    """The sensing rounds seen of each node, and the rounds seen when backends and nodes changed."""
    watch: WatchLiveness = field(default_factory=WatchLiveness)
    """Each node's kube-proxy's count of EndpointSlice events, judged across nodes (operator/watch.py)."""
    intents: dict[str, IntentTracking] = field(default_factory=dict)
    restarts: dict[str, datetime] = field(default_factory=dict)
    sysctl_gaps: dict[str, SysctlGap] = field(default_factory=dict)
    """Nodes whose expire_nodest_conn is 0 while no policy can set it (operator/sysctl_gaps.py)."""
    restored_history: dict[str, list[ActionRecord]] = field(default_factory=dict)
    """Actions of the last hour read back at start (operator/record.py), taken by each policy's
    entry when the policy first appears."""
    _slice_versions: dict[tuple[ServiceRef, str], tuple[str, int]] = field(default_factory=dict)
    """(Service, slice name) → the uid and generation of the version held."""
    _revision: int = 0
    """Bumped by every change of a policy, Service or EndpointSlice."""
    _vips: dict[str, tuple[int, ProxyHealthPolicy, Selection]] = field(default_factory=dict)
    """Nodes whose kube-proxy pod was deleted, and when: restarts in progress."""

    # --- feeding -----------------------------------------------------------------------

    def set_policy(self, name: str, raw: Mapping[str, Any] | None) -> PolicyEntry | None:
        """Store a policy, or the reasons it is invalid; None when it was deleted."""
        self._revision += 1
        if raw is None:
            self.policies.pop(name, None)
            return None
        entry = self.policies.get(name)
        if entry is None:
            restored = self.restored_history.pop(name, [])
            entry = self.policies[name] = PolicyEntry(policy=None, history=restored)
        entry.generation = (raw.get("metadata") or {}).get("generation")
        entry.status_dirty = True
        try:
            policy = ProxyHealthPolicy.model_validate({k: v for k, v in raw.items() if k != "status"})
        except ValidationError as exc:
            entry.policy, entry.errors = None, describe_errors(exc, ProxyHealthPolicy)
            return entry
        entry.policy, entry.errors = policy, []
        min_observation = policy.spec.guardrails.min_observation
        if entry.ladder is None:
            entry.ladder = Ladder(min_observation)
        entry.ladder.min_observation = min_observation
        entry.ladder.program_grace = policy.spec.actions.restart_kube_proxy.stale_after
        return entry

    def set_service(self, raw: Mapping[str, Any], deleted: bool) -> ServiceRef | None:
        self._revision += 1
        info = parse_service(raw)
        meta = raw.get("metadata") or {}
        # One ServiceRef per Service: its slices' state is keyed by this same object (set_slice).
        ref = (
            info.ref
            if info is not None
            else ServiceRef(str(meta.get("namespace", "")), str(meta.get("name", "")))
        )
        spec = None if deleted else parse_service_spec(raw)
        if spec is None:
            self.service_specs.pop(ref, None)
        else:  # the same namespace as the ref, also when the object names none
            self.service_specs[ref] = replace(spec, namespace=ref.namespace, ports=share(spec.ports))
        if deleted or info is None:
            self.services.pop(ref, None)
            return None
        self.services[ref] = info
        return ref

    def set_slice(
        self, raw: Mapping[str, Any], deleted: bool, now: datetime | None = None
    ) -> ServiceRef | None:
        self._revision += 1
        parsed = parse_slice(raw)
        if parsed is None:
            return None
        ref, name, state = parsed
        known = self.services.get(ref)
        ref = known.ref if known is not None else ref  # the Service's own ServiceRef, not a copy
        key = (ref, name)  # one tuple for the maps keyed by slice
        moment = now or datetime.now(UTC)
        version = self._slice_version(key, raw, deleted)
        if version is _SliceVersion.OLDER:
            return None
        if version is _SliceVersion.CHANGED:
            self.watch.slice_changed(moment)
        endpoints = self.endpoints.setdefault(ref, ServiceEndpoints())
        spec = None if deleted else parse_slice_spec(raw)
        before = endpoints.in_use()
        endpoints.remember_ports(keep=self.acted.get(ref, frozenset()))
        if deleted:
            endpoints.slices.pop(name, None)
        else:
            endpoints.slices[name] = state
        if spec is None:
            self.held_slices.pop(key, None)
        else:
            self.held_slices[key] = HeldSlice.of(spec, ref.namespace)
        # Backends that became live or dead (all live ones at first sight: they may have just become
        # so): reports the operator already holds were sensed before the change and prove nothing of it.
        self.evidence.backends_changed(ref, before ^ endpoints.in_use(), moment)
        return ref

    def _slice_version(
        self, key: tuple[ServiceRef, str], raw: Mapping[str, Any], deleted: bool
    ) -> _SliceVersion:
        """How this version of a slice compares with the one held.

        An older one comes from a lagging cache's list, or the watch replayed after it: judged, it
        would turn live backends dead again (the API server raises an EndpointSlice's generation on
        every change of its endpoints). A changed one (a higher generation of the held slice, or its
        deletion) is a change every kube-proxy's watch delivers; a first sight may be a relist."""
        meta = raw.get("metadata") or {}
        uid, generation = meta.get("uid"), meta.get("generation")
        if deleted:
            return _SliceVersion.CHANGED if self._slice_versions.pop(key, None) else _SliceVersion.UNKNOWN
        if not isinstance(uid, str) or not isinstance(generation, int):
            return _SliceVersion.UNKNOWN
        held = self._slice_versions.get(key)
        if held is not None and held[0] == uid and generation < held[1]:
            return _SliceVersion.OLDER
        self._slice_versions[key] = (uid, generation)
        if held is not None and held[0] == uid and generation > held[1]:
            return _SliceVersion.CHANGED
        return _SliceVersion.UNKNOWN

    def set_node(self, raw: Mapping[str, Any], deleted: bool) -> None:
        meta = raw.get("metadata") or {}
        name = str(meta.get("name", ""))
        if deleted:
            self.nodes.pop(name, None)
            self.node_uids.pop(name, None)
            self.node_specs.pop(name, None)
            return
        self.nodes[name] = dict(meta.get("labels") or {})
        self.node_specs[name] = parse_node_spec(raw)
        self.node_uids[name] = str(meta.get("uid", ""))

    def set_health(
        self, node: str, raw: Mapping[str, Any] | None, now: datetime | None = None
    ) -> NodeProxyHealthStatus | None:
        if raw is None:
            self.healths.pop(node, None)
            self.evidence.forget_node(node)
            self.watch.forget(node)
            return None
        try:
            health = NodeProxyHealth.model_validate(raw)
        except ValidationError:
            return None  # a report the models reject is no evidence of anything
        moment = now or datetime.now(UTC)
        if health.status is None or not self.evidence.seen(node, health.status, moment):
            return None
        self.healths[node] = health.status
        self.watch.reported(node, health.status, moment, self.evidence)
        return health.status

    # --- queries -----------------------------------------------------------------------

    def valid_policies(self) -> list[ProxyHealthPolicy]:
        return [entry.policy for entry in self.policies.values() if entry.policy is not None]

    def governing(self, ref: ServiceRef) -> ProxyHealthPolicy | None:
        service = self.services.get(ref)
        return covering_policy(self.valid_policies(), service) if service else None

    def selected_services(self, policy: ProxyHealthPolicy) -> Iterator[ServiceInfo]:
        for ref, service in self.services.items():
            governing = self.governing(ref)
            if governing is not None and governing.metadata.name == policy.metadata.name:
                yield service

    def selected_nodes(self, policy: ProxyHealthPolicy, now: datetime) -> list[str]:
        """Nodes the policy selects that have a live agent: the targets of its intents.

        A report of a node the cluster does not have (no Node object) is no evidence of anything.
        """
        selector = policy.spec.nodes.label_selector
        return sorted(
            node
            for node, status in self.healths.items()
            if node in self.nodes
            and now - status.observed_at < AGENT_SILENT_AFTER
            and selector.matches(self.nodes[node])
        )

    def node_selected(self, policy: ProxyHealthPolicy, node: str, now: datetime) -> bool:
        """Whether ``selected_nodes`` includes this node, without judging every other node."""
        status = self.healths.get(node)
        return (
            status is not None
            and node in self.nodes
            and now - status.observed_at < AGENT_SILENT_AFTER
            and policy.spec.nodes.label_selector.matches(self.nodes[node])
        )

    def selected_vips(self, policy: ProxyHealthPolicy) -> Selection:
        """(VIP, port, protocol) → Service and live backends, for every Service the policy governs;
        ``on(node)`` gives what kube-proxy should have programmed on a node.

        Cached until a Service, an EndpointSlice or a policy changes: every node report needs it,
        and building it walks every Service.
        """
        cached = self._vips.get(policy.metadata.name)
        if cached is not None and cached[0] == self._revision and cached[1] is policy:
            return cached[2]
        result = self._selected_vips(policy)
        self._vips[policy.metadata.name] = (self._revision, policy, result)
        return result

    def _selected_vips(self, policy: ProxyHealthPolicy) -> Selection:
        result: dict[VipKey, SelectedVip] = {}
        protocols = {str(protocol) for protocol in policy.spec.services.protocols}
        for service in self.selected_services(policy):
            endpoints = self.endpoints.get(service.ref, ServiceEndpoints())
            live = endpoints.in_use()
            ports = endpoints.endpoint_ports()
            for port in service.ports:
                target = resolve_target_port(port, ports)
                if port.protocol not in protocols or target is None:
                    continue
                for vip in service.cluster_ips:
                    key = (vip, port.port, port.protocol)
                    result[key] = SelectedVip(service.ref, policy.metadata.name, live, target)
        chosen = {(selected.service.namespace, selected.service.name) for selected in result.values()}
        slices = [held.spec() for held in self.held_slices.values() if held.service_key in chosen]
        return NodeSelection(
            result, self.service_specs.values(), slices, self.node_specs, frozenset(protocols)
        )

    def prune_history(self, now: datetime) -> None:
        for entry in self.policies.values():
            entry.history = [record for record in entry.history if now - record.at < HOUR]
        self.evidence.prune({ref: endpoints.in_use() for ref, endpoints in self.endpoints.items()}, now)
