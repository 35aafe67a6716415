"""ProxyHealthPolicy: what to watch, which repairs are allowed, and the guardrails around them.

Safe by default: every action is disabled until the policy enables it, so a policy with no
``actions`` only observes and reports.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field, StrictBool, model_validator

from proxymedic.api.meta import Condition, LabelSelector, ObjectMeta
from proxymedic.api.types import (
    ApiModel,
    ClockTime,
    CountOrPercent,
    Duration,
    DurationBounds,
    IPAddressStr,
    NamespaceName,
    Percent,
    Port,
    TimeZoneName,
    cel,
)


class ServiceProtocol(enum.StrEnum):
    UDP = "UDP"
    TCP = "TCP"
    SCTP = "SCTP"


class ServiceSelection(ApiModel):
    """Which Services the policy covers. Empty namespaces means every namespace."""

    namespaces: Annotated[list[NamespaceName], Field(max_length=64)] = Field(default_factory=list)
    label_selector: LabelSelector = Field(default_factory=LabelSelector)
    protocols: Annotated[list[ServiceProtocol], Field(min_length=1, max_length=3)] = Field(
        default_factory=lambda: [ServiceProtocol.UDP],
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )

    @model_validator(mode="after")
    def _protocols_unique(self) -> ServiceSelection:
        if len(set(self.protocols)) != len(self.protocols):
            raise ValueError("protocols must not repeat a protocol")
        return self


class NodeSelection(ApiModel):
    """Which nodes the policy covers; an empty selector means every node."""

    label_selector: LabelSelector = Field(default_factory=LabelSelector)


class FlushStaleConnections(ApiModel):
    """F1: expire IPVS connection entries to backends that left the Service."""

    enabled: StrictBool = False


class RemoveStaleRealServers(ApiModel):
    """F2: remove IPVS real servers that kube-proxy left behind for dead backends."""

    enabled: StrictBool = False


class KubeProxyTarget(ApiModel):
    """How to find the kube-proxy pod of a node."""

    namespace: NamespaceName = "kube-system"
    label_selector: LabelSelector = Field(
        default_factory=lambda: LabelSelector(match_labels={"k8s-app": "kube-proxy"}),
    )


class RestartKubeProxy(ApiModel):
    """F3/F4: delete the node's kube-proxy pod when its rule sync is stale, so its DaemonSet recreates it.

    A restart flushes UDP conntrack for every Service on the node (kubernetes#122740), so it is
    the last step of the escalation ladder and always guarded.
    """

    enabled: StrictBool = False
    stale_after: Annotated[Duration, DurationBounds("10s", "1h")] = Field(
        default=timedelta(seconds=90),
        description=(
            "Sync age beyond which kube-proxy counts as stale while changes are pending; also how "
            "long a live backend may lack its real server on a node (kube-proxy still programming "
            "it) before the minimum observation of that finding starts."
        ),
    )
    target: KubeProxyTarget = Field(default_factory=KubeProxyTarget)


class SetIPVSUDPTimeout(ApiModel):
    """Prevention: bound how long NEW IPVS UDP entries live. It never shortens existing entries."""

    enabled: StrictBool = False
    timeout: Annotated[Duration, DurationBounds("1s", "1h")] = timedelta(seconds=30)


class EnforceSysctls(ApiModel):
    """F7: keep the IPVS sysctls that make stale entries expire at 1."""

    enabled: StrictBool = False
    expire_nodest_conn: StrictBool = True
    expire_quiescent_template: StrictBool = True


class FlushStaleConntrack(ApiModel):
    """F5: delete UDP conntrack entries to a Service VIP whose reply source is a dead backend."""

    enabled: StrictBool = False


class RaiseConntrackMax(ApiModel):
    """F6: raise nf_conntrack_max in steps when the table fills, up to a ceiling the policy sets."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!self.enabled || has(self.ceiling)",
                    "ceiling is required when enabled is true",
                    ".ceiling",
                )
            ]
        }
    )

    enabled: StrictBool = False
    threshold_percent: Annotated[int, Field(ge=50, le=100)] = 90
    step_percent: Annotated[int, Field(ge=1, le=100)] = 25
    ceiling: Annotated[int, Field(ge=1024, le=1 << 30)] | None = None

    @model_validator(mode="after")
    def _ceiling_when_enabled(self) -> RaiseConntrackMax:
        if self.enabled and self.ceiling is None:
            raise ValueError("ceiling is required when enabled is true")
        return self


class Actions(ApiModel):
    flush_stale_connections: FlushStaleConnections = Field(default_factory=FlushStaleConnections)
    remove_stale_real_servers: RemoveStaleRealServers = Field(default_factory=RemoveStaleRealServers)
    restart_kube_proxy: RestartKubeProxy = Field(default_factory=RestartKubeProxy)
    ipvs_udp_timeout: SetIPVSUDPTimeout = Field(default_factory=SetIPVSUDPTimeout, alias="ipvsUDPTimeout")
    enforce_sysctls: EnforceSysctls = Field(default_factory=EnforceSysctls)
    flush_stale_conntrack: FlushStaleConntrack = Field(default_factory=FlushStaleConntrack)
    raise_conntrack_max: RaiseConntrackMax = Field(default_factory=RaiseConntrackMax)

    def any_enabled(self) -> bool:
        return any(getattr(self, name).enabled for name in type(self).model_fields)


class Weekday(enum.StrEnum):
    MON = "Mon"
    TUE = "Tue"
    WED = "Wed"
    THU = "Thu"
    FRI = "Fri"
    SAT = "Sat"
    SUN = "Sun"


class MaintenanceWindow(ApiModel):
    """A weekly window in which disruptive actions may run; ``end`` before ``start`` spans midnight."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [cel("self.start != self.end", "start and end must differ", ".end")]
        }
    )

    days: Annotated[list[Weekday], Field(min_length=1, max_length=7)] = Field(
        default_factory=lambda: list(Weekday), json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    start: ClockTime
    end: ClockTime
    time_zone: TimeZoneName = "UTC"

    @model_validator(mode="after")
    def _non_empty(self) -> MaintenanceWindow:
        if self.start == self.end:
            raise ValueError(f"start and end must differ (both are {self.start})")
        return self


class HourlyBudget(ApiModel):
    """How many actions of each kind may run in any sliding hour, per node and across the cluster.

    Each kind of action (a kube-proxy restart, a sysctl fix, a flush...) has a budget of its own.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.perNode <= self.perCluster", "perNode must not exceed perCluster", ".perNode")
            ]
        }
    )

    per_node: Annotated[int, Field(ge=0, le=1000)] = 6
    per_cluster: Annotated[int, Field(ge=0, le=100_000)] = 100

    @model_validator(mode="after")
    def _node_within_cluster(self) -> HourlyBudget:
        if self.per_node > self.per_cluster:
            raise ValueError(f"perNode ({self.per_node}) must not exceed perCluster ({self.per_cluster})")
        return self


class Guardrails(ApiModel):
    dry_run: StrictBool = Field(
        default=False, description="Decide and report, but change nothing on any node."
    )
    paused: StrictBool = Field(
        default=False, description="Decide nothing; also set by the proxymedic.io/paused annotation."
    )
    node_cooldown: Annotated[Duration, DurationBounds("0s", "24h")] = Field(
        default=timedelta(minutes=5),
        description=(
            "Least time between two actions of the same kind on one node, whichever policy ran the "
            "first; flushes and real-server removals have none."
        ),
    )
    hourly_budget: HourlyBudget = Field(default_factory=HourlyBudget)
    max_concurrent_kube_proxy_restarts: CountOrPercent = 1
    anomaly_threshold_percent: Annotated[Percent, Field(ge=1)] = Field(
        default=30, description="Share of selected nodes stale at once that holds every restart."
    )
    anomaly_min_nodes: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=3, description="The anomaly breaker needs at least this many stale nodes to trip."
    )
    min_observation: Annotated[Duration, DurationBounds("0s", "1h")] = Field(
        default=timedelta(seconds=30),
        description="How long a finding must persist before each escalation step.",
    )
    maintenance_windows: Annotated[list[MaintenanceWindow], Field(max_length=16)] = Field(
        default_factory=list,
        description="When set, disruptive actions (kube-proxy restart, conntrack max raise) run only in one.",
    )


class ProxyHealthPolicySpec(ApiModel):
    services: ServiceSelection = Field(default_factory=ServiceSelection)
    nodes: NodeSelection = Field(default_factory=NodeSelection)
    actions: Actions = Field(default_factory=Actions)
    guardrails: Guardrails = Field(default_factory=Guardrails)


class PolicyCounters(ApiModel):
    intents_issued: Annotated[int, Field(ge=0)] = 0
    actions_applied: Annotated[int, Field(ge=0)] = 0
    actions_held: Annotated[int, Field(ge=0)] = 0
    dry_run_actions: Annotated[int, Field(ge=0)] = 0
    kube_proxy_restarts: Annotated[int, Field(ge=0)] = 0


class LastRemediation(ApiModel):
    time: datetime
    action: Annotated[str, Field(max_length=64)]
    target: Annotated[str, Field(max_length=512)]
    message: Annotated[str, Field(max_length=1024)] = ""


MAX_SENSED_VIRTUAL_SERVERS = 512
"""As many as a node report holds: a policy selecting more has agents dump their whole table."""


class SensedAddress(ApiModel):
    """A virtual server the same on every node: a ClusterIP, externalIP or load-balancer IP."""

    address: IPAddressStr
    port: Port
    protocol: ServiceProtocol


class SensedNodePort(ApiModel):
    """A NodePort: a virtual server on each of a node's InternalIPs."""

    port: Port
    protocol: ServiceProtocol


class SensingScope(ApiModel):
    """What agents look up for this policy, written by the operator: the virtual servers of the
    Services it governs. Agents look up exactly these instead of dumping their node's IPVS table,
    so a round's cost follows what policies select; where the list would be longer than
    ``MAX_SENSED_VIRTUAL_SERVERS``, ``complete`` is false and agents dump their table."""

    virtual_servers: Annotated[list[SensedAddress], Field(max_length=MAX_SENSED_VIRTUAL_SERVERS)] = Field(
        default_factory=list
    )
    node_ports: Annotated[list[SensedNodePort], Field(max_length=MAX_SENSED_VIRTUAL_SERVERS)] = Field(
        default_factory=list
    )
    complete: StrictBool = True


class ProxyHealthPolicyStatus(ApiModel):
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    conditions: Annotated[list[Condition], Field(max_length=16)] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    selected_services: Annotated[int, Field(ge=0)] | None = None
    selected_nodes: Annotated[int, Field(ge=0)] | None = None
    counters: PolicyCounters = Field(default_factory=PolicyCounters)
    last_remediation: LastRemediation | None = None
    sensing: SensingScope | None = None


class ProxyHealthPolicy(ApiModel):
    kind_name: ClassVar[str] = "ProxyHealthPolicy"

    api_version: Literal["proxymedic.io/v1alpha1"] = "proxymedic.io/v1alpha1"
    kind: Literal["ProxyHealthPolicy"] = "ProxyHealthPolicy"
    metadata: ObjectMeta
    spec: ProxyHealthPolicySpec = Field(default_factory=ProxyHealthPolicySpec)
    status: ProxyHealthPolicyStatus | None = None

    PAUSE_ANNOTATION: ClassVar[str] = "proxymedic.io/paused"

    @property
    def paused(self) -> bool:
        """Paused by the spec or by the ``proxymedic.io/paused: "true"`` annotation."""
        return self.spec.guardrails.paused or self.metadata.annotations.get(self.PAUSE_ANNOTATION) == "true"
