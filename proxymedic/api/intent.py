"""RemediationIntent: one decided action, addressed to a set of nodes.

Intents are level-based (docs/architecture.md, "The contract"): each carries the Service's VIPs
and ports, the dead backends AND the live backends at decision time, so re-applying one is
harmless and an agent can refuse any step that would touch a live backend. The spec is immutable
once created.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field, StrictBool, model_validator

from proxymedic.api.meta import Condition, LabelSelector, ObjectMeta
from proxymedic.api.policy import ServiceProtocol
from proxymedic.api.sysctls import ALLOWED_SYSCTLS
from proxymedic.api.types import (
    ApiModel,
    IPAddressStr,
    NamespaceName,
    ObjectName,
    Port,
    cel,
)

MAX_DEAD_BACKENDS = 256
MAX_LIVE_BACKENDS = 1024
MAX_TARGET_NODES = 5000


class IntentAction(enum.StrEnum):
    FLUSH_STALE_BACKENDS = "FlushStaleBackends"
    """F1, F2, F5: clear the state of dead backends, in the steps the intent lists."""
    SET_IPVS_UDP_TIMEOUT = "SetIPVSUDPTimeout"
    """Prevention: bound the lifetime of new IPVS UDP entries."""
    ENFORCE_SYSCTLS = "EnforceSysctls"
    """F7: set the listed sysctls."""
    RAISE_CONNTRACK_MAX = "RaiseConntrackMax"
    """F6: raise nf_conntrack_max."""


class FlushStep(enum.StrEnum):
    """What FlushStaleBackends does for each dead backend, in this order."""

    REMOVE_REAL_SERVERS = "RemoveRealServers"
    """F2: delete the dead backend's IPVS real server if kube-proxy left it (the kernel then expires
    its connections when net.ipv4.vs.expire_nodest_conn is 1)."""
    FLUSH_CONNECTIONS = "FlushConnections"
    """F1: expire IPVS connection entries to the dead backend without touching a present real
    server: re-add it with weight 0 and delete it (docs/kernel.md, row D3)."""
    DELETE_CONNTRACK = "DeleteConntrack"
    """F5: delete UDP conntrack entries to the VIP whose reply source is the dead backend."""


SERVICE_ACTIONS = (IntentAction.FLUSH_STALE_BACKENDS,)


class ServicePort(ApiModel):
    """A Service port and the port its endpoints listen on (the IPVS real server port)."""

    name: Annotated[str, Field(max_length=63)] | None = None
    protocol: ServiceProtocol = ServiceProtocol.UDP
    port: Port
    target_port: Port


class ServiceTarget(ApiModel):
    namespace: NamespaceName
    name: Annotated[str, Field(min_length=1, max_length=63)]
    cluster_ips: Annotated[list[IPAddressStr], Field(min_length=1, max_length=2, alias="clusterIPs")]
    ports: Annotated[list[ServicePort], Field(min_length=1, max_length=64)]


class IntentParameters(ApiModel):
    udp_timeout_seconds: Annotated[int, Field(ge=1, le=86400)] | None = None
    sysctls: dict[str, Annotated[int, Field(ge=0, le=1 << 31)]] | None = None
    conntrack_max: Annotated[int, Field(ge=1024, le=1 << 30)] | None = None


class RemediationIntentSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self == oldSelf", "spec is immutable: issue a new intent instead"),
                cel(
                    "self.allNodes != (size(self.nodeNames) > 0)",
                    "set exactly one of allNodes or nodeNames",
                    ".nodeNames",
                ),
                cel(
                    "self.allNodes || !has(self.nodeSelector)",
                    "nodeSelector narrows allNodes and needs it",
                    ".nodeSelector",
                ),
                cel(
                    "self.action != 'FlushStaleBackends'"
                    " || (has(self.service) && size(self.deadBackends) > 0 && size(self.steps) > 0)",
                    "service, at least one dead backend and at least one step are required"
                    " for FlushStaleBackends",
                    ".deadBackends",
                ),
                cel(
                    "self.action != 'SetIPVSUDPTimeout' || has(self.parameters.udpTimeoutSeconds)",
                    "parameters.udpTimeoutSeconds is required for SetIPVSUDPTimeout",
                    ".parameters",
                ),
                cel(
                    "self.action != 'EnforceSysctls' || has(self.parameters.sysctls)",
                    "parameters.sysctls is required for EnforceSysctls",
                    ".parameters",
                ),
                cel(
                    "self.action != 'RaiseConntrackMax' || has(self.parameters.conntrackMax)",
                    "parameters.conntrackMax is required for RaiseConntrackMax",
                    ".parameters",
                ),
            ]
        }
    )

    policy_name: ObjectName
    action: IntentAction
    reason: Annotated[str, Field(max_length=1024)] = ""
    service: ServiceTarget | None = None
    dead_backends: Annotated[list[IPAddressStr], Field(max_length=MAX_DEAD_BACKENDS)] = Field(
        default_factory=list, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    live_backends: Annotated[list[IPAddressStr], Field(max_length=MAX_LIVE_BACKENDS)] = Field(
        default_factory=list, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    steps: Annotated[list[FlushStep], Field(max_length=3)] = Field(
        default_factory=list, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    all_nodes: StrictBool = False
    node_selector: LabelSelector | None = None
    node_names: Annotated[list[ObjectName], Field(max_length=MAX_TARGET_NODES)] = Field(
        default_factory=list, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    dry_run: StrictBool = False
    decided_at: datetime
    expires_at: datetime
    parameters: IntentParameters = Field(default_factory=IntentParameters)

    @model_validator(mode="after")
    def _consistent(self) -> RemediationIntentSpec:
        if self.all_nodes == bool(self.node_names):
            raise ValueError("set exactly one of allNodes or nodeNames")
        both = sorted(set(self.dead_backends) & set(self.live_backends))
        if both:
            raise ValueError(f"deadBackends and liveBackends overlap: {', '.join(both)}")
        if self.node_selector is not None and not self.all_nodes:
            raise ValueError("nodeSelector narrows allNodes and needs it")
        if self.action in SERVICE_ACTIONS and (
            self.service is None or not self.dead_backends or not self.steps
        ):
            raise ValueError(
                f"service, at least one dead backend and at least one step are required for {self.action}"
            )
        if self.expires_at <= self.decided_at:
            raise ValueError("expiresAt must be later than decidedAt")
        self._check_parameters()
        return self

    def _check_parameters(self) -> None:
        params = self.parameters
        if self.action is IntentAction.SET_IPVS_UDP_TIMEOUT and params.udp_timeout_seconds is None:
            raise ValueError("parameters.udpTimeoutSeconds is required for SetIPVSUDPTimeout")
        if self.action is IntentAction.RAISE_CONNTRACK_MAX and params.conntrack_max is None:
            raise ValueError("parameters.conntrackMax is required for RaiseConntrackMax")
        if self.action is IntentAction.ENFORCE_SYSCTLS:
            if not params.sysctls:
                raise ValueError("parameters.sysctls is required for EnforceSysctls")
            unknown = sorted(set(params.sysctls) - set(ALLOWED_SYSCTLS))
            if unknown:
                raise ValueError(
                    f"parameters.sysctls may only set {', '.join(ALLOWED_SYSCTLS)}; not {unknown}"
                )

    def addresses(self, node_name: str, node_labels: Mapping[str, str]) -> bool:
        """Whether this intent is addressed to the node with this name and these labels."""
        if self.all_nodes:
            return self.node_selector is None or self.node_selector.matches(node_labels)
        return node_name in self.node_names


class IntentOutcome(enum.StrEnum):
    APPLIED = "Applied"
    """The node changed something and verified the result."""
    ALREADY_CLEAN = "AlreadyClean"
    """Nothing to do: no state of the dead backends was found."""
    DRY_RUN = "DryRun"
    """The node reported what it would do and changed nothing."""
    REFUSED = "Refused"
    """The node refused a step, e.g. one that would touch a live backend."""
    FAILED = "Failed"
    """A step failed; the message says which and why."""


class OutcomeCounts(ApiModel):
    applied: Annotated[int, Field(ge=0)] = 0
    already_clean: Annotated[int, Field(ge=0)] = 0
    dry_run: Annotated[int, Field(ge=0)] = 0
    refused: Annotated[int, Field(ge=0)] = 0
    failed: Annotated[int, Field(ge=0)] = 0

    @property
    def total(self) -> int:
        return self.applied + self.already_clean + self.dry_run + self.refused + self.failed


class RemediationIntentStatus(ApiModel):
    target_nodes: Annotated[int, Field(ge=0)] | None = None
    reported_nodes: Annotated[int, Field(ge=0)] | None = None
    outcomes: OutcomeCounts = Field(default_factory=OutcomeCounts)
    completed_at: datetime | None = None
    duration_seconds: Annotated[float, Field(ge=0)] | None = None
    conditions: Annotated[list[Condition], Field(max_length=16)] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class RemediationIntent(ApiModel):
    kind_name: ClassVar[str] = "RemediationIntent"

    api_version: Literal["proxymedic.io/v1alpha1"] = "proxymedic.io/v1alpha1"
    kind: Literal["RemediationIntent"] = "RemediationIntent"
    metadata: ObjectMeta
    spec: RemediationIntentSpec
    status: RemediationIntentStatus | None = None
