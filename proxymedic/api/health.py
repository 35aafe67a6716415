"""NodeProxyHealth: one node's observed dataplane state and its recent intent results.

The agent of the node named in ``spec.nodeName`` writes the status; the operator reads it
to detect drift and to aggregate intent outcomes. Missing data stays absent ("unknown"),
never a guessed value.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field, StrictBool, model_validator

from proxymedic.api.intent import IntentOutcome
from proxymedic.api.meta import ObjectMeta
from proxymedic.api.policy import ServiceProtocol
from proxymedic.api.types import ApiModel, IPAddressStr, ObjectName, Port, cel

MAX_VIRTUAL_SERVERS = 512
MAX_REAL_SERVERS = 1024
MAX_FINDINGS = 64
MAX_RECENT_RESULTS = 32


class ProxyMode(enum.StrEnum):
    IPVS = "ipvs"
    IPTABLES = "iptables"
    NFTABLES = "nftables"
    UNKNOWN = "unknown"


class Freshness(enum.StrEnum):
    FRESH = "Fresh"
    STALE = "Stale"
    UNKNOWN = "Unknown"
    """The probe could not tell (unreachable, malformed or missing metrics): never a reason to act."""


class Healthz(enum.StrEnum):
    HEALTHY = "Healthy"
    UNHEALTHY = "Unhealthy"
    UNKNOWN = "Unknown"


class KubeProxyState(ApiModel):
    freshness: Freshness = Freshness.UNKNOWN
    reason: Annotated[str, Field(max_length=1024)] = ""
    last_sync_time: datetime | None = None
    last_queued_time: datetime | None = None
    healthz: Healthz = Healthz.UNKNOWN
    endpoint_changes_total: Annotated[int, Field(ge=0)] | None = Field(
        default=None,
        description=(
            "EndpointSlice events kube-proxy counted since it started; absent when it exports none. "
            "The operator compares its rise across nodes: a kube-proxy whose watch died counts none."
        ),
    )
    service_changes_total: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="Service events kube-proxy counted since it started."
    )
    started_at: datetime | None = Field(
        default=None,
        description="When the kube-proxy process started: counters are compared within one process.",
    )


class IPVSState(ApiModel):
    tcp_timeout_seconds: Annotated[int, Field(ge=0)] | None = None
    tcp_fin_timeout_seconds: Annotated[int, Field(ge=0)] | None = None
    udp_timeout_seconds: Annotated[int, Field(ge=0)] | None = None


class ConntrackState(ApiModel):
    count: Annotated[int, Field(ge=0)]
    max: Annotated[int, Field(ge=0)]
    drops: Annotated[int, Field(ge=0)] | None = None


class RealServerState(ApiModel):
    ip: IPAddressStr
    port: Port
    weight: Annotated[int, Field(ge=0)]
    connections: Annotated[int, Field(ge=0)] = 0


class OrphanedConnections(ApiModel):
    """Connection entries to a destination that is no longer a real server of the virtual server."""

    ip: IPAddressStr
    port: Port
    connections: Annotated[int, Field(ge=0)]


class VirtualServerState(ApiModel):
    vip: IPAddressStr
    port: Port
    protocol: ServiceProtocol
    real_servers: Annotated[list[RealServerState], Field(max_length=MAX_REAL_SERVERS)] = Field(
        default_factory=list
    )
    orphaned_connections: Annotated[list[OrphanedConnections], Field(max_length=MAX_REAL_SERVERS)] = Field(
        default_factory=list
    )


class FindingType(enum.StrEnum):
    STALE_CONNECTIONS = "StaleConnections"
    STALE_REAL_SERVER = "StaleRealServer"
    STALE_RULE = "StaleRule"
    """nftables or iptables mode: kube-proxy's rules still DNAT to an endpoint that is no backend."""
    MISSING_REAL_SERVER = "MissingRealServer"
    KUBE_PROXY_SYNC_STALE = "KubeProxySyncStale"
    KUBE_PROXY_WATCH_SILENT = "KubeProxyWatchSilent"
    """kube-proxy counted none of the EndpointSlice changes the other nodes' kube-proxies counted."""
    STALE_CONNTRACK = "StaleConntrack"
    CONNTRACK_PRESSURE = "ConntrackPressure"
    SYSCTL_DRIFT = "SysctlDrift"


class Finding(ApiModel):
    type: FindingType
    message: Annotated[str, Field(max_length=1024)]
    since: datetime
    vip: IPAddressStr | None = None
    port: Port | None = None
    backend: IPAddressStr | None = None


class IntentResult(ApiModel):
    intent: ObjectName
    intent_uid: Annotated[str, Field(max_length=64)] | None = None
    outcome: IntentOutcome
    completed_at: datetime
    duration_seconds: Annotated[float, Field(ge=0)] = 0.0
    removed_real_servers: Annotated[int, Field(ge=0)] = 0
    flushed_connections: Annotated[int, Field(ge=0)] = 0
    deleted_conntrack_entries: Annotated[int, Field(ge=0)] = 0
    message: Annotated[str, Field(max_length=1024)] = ""
    verified_round: Annotated[int, Field(ge=1)] | None = Field(
        default=None,
        description="The agent's first sensing round that began after the intent was applied: a report "
        "of a later round (of the same incarnation) was sensed after the change.",
    )


class NodeProxyHealthSpec(ApiModel):
    node_name: ObjectName


class NodeProxyHealthStatus(ApiModel):
    observed_at: datetime
    incarnation: Annotated[str, Field(max_length=64)] | None = Field(
        default=None,
        description="Identifies one run of the agent: its round numbers start over when it restarts.",
    )
    round: Annotated[int, Field(ge=1)] | None = Field(
        default=None,
        description="The agent's sensing round this report comes from, increasing within an incarnation: "
        "the operator orders reports by it, never by clocks.",
    )
    agent_version: Annotated[str, Field(max_length=64)] = ""
    kernel_version: Annotated[str, Field(max_length=128)] = ""
    proxy_mode: ProxyMode = ProxyMode.UNKNOWN
    kube_proxy: KubeProxyState = Field(default_factory=KubeProxyState)
    ipvs: IPVSState | None = None
    sysctls: dict[str, int] = Field(default_factory=dict)
    sysctls_writable: StrictBool | None = Field(
        default=None,
        description="Whether the agent can write the sysctls it would enforce: false where its container "
        "sees /proc/sys read-only (the chart's agent.sysctlWrites is off); absent when unknown.",
    )
    conntrack: ConntrackState | None = None
    virtual_servers: Annotated[list[VirtualServerState], Field(max_length=MAX_VIRTUAL_SERVERS)] = Field(
        default_factory=list
    )
    virtual_servers_truncated: StrictBool = False
    findings: Annotated[list[Finding], Field(max_length=MAX_FINDINGS)] = Field(default_factory=list)
    finding_count: Annotated[int, Field(ge=0)] = 0
    recent_results: Annotated[list[IntentResult], Field(max_length=MAX_RECENT_RESULTS)] = Field(
        default_factory=list
    )
    problems: Annotated[list[Annotated[str, Field(max_length=512)]], Field(max_length=16)] = Field(
        default_factory=list,
        description="What the agent could not sense, and why (e.g. a permission it lacks).",
    )


class NodeProxyHealth(ApiModel):
    """Named after its node; ``spec.nodeName`` repeats the name so the schema can check it."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.metadata.name == self.spec.nodeName", "spec.nodeName must equal metadata.name")
            ]
        }
    )
    kind_name: ClassVar[str] = "NodeProxyHealth"

    api_version: Literal["proxymedic.io/v1alpha1"] = "proxymedic.io/v1alpha1"
    kind: Literal["NodeProxyHealth"] = "NodeProxyHealth"
    metadata: ObjectMeta
    spec: NodeProxyHealthSpec
    status: NodeProxyHealthStatus | None = None

    @model_validator(mode="after")
    def _named_after_its_node(self) -> NodeProxyHealth:
        if self.metadata.name != self.spec.node_name:
            names = f"{self.spec.node_name!r} is not {self.metadata.name!r}"
            raise ValueError(f"spec.nodeName must equal metadata.name ({names})")
        return self
