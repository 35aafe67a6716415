"""A node whose net.ipv4.vs.expire_nodest_conn is 0 while no policy can set it to 1: said once per node.

With expire_nodest_conn=0 the kernel keeps a client's UDP flow on a removed backend until the
IPVS UDP timeout (300 s by default): neither removing the real server nor the flush clears it,
only the sysctl does (rows A and D2 of docs/kernel.md). A policy sets it with ``enforceSysctls``,
and the agent must be allowed to write sysctls (the chart's ``agent.sysctlWrites``, off by
default because it makes the agent privileged). When either is missing the drift can only be
held, so the operator says once per node what it costs and what fixes it: a Warning Event
``SysctlNotEnforced`` on the Node, and the condition ``SysctlNotEnforced`` on the policies that
select the node. ``proxymedic diagnose`` judges the same with ``sysctl_gap``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from proxymedic.api import reasons
from proxymedic.api.health import NodeProxyHealthStatus, ProxyMode
from proxymedic.api.meta import Condition, ConditionStatus
from proxymedic.api.policy import ProxyHealthPolicy
from proxymedic.api.sysctls import EXPIRE_NODEST_CONN

CONDITION = reasons.SYSCTL_NOT_ENFORCED
DEFAULT_IPVS_UDP_TIMEOUT = 300
"""Seconds: the kernel's IPVS UDP timeout unless something set another (ipvsadm --set)."""
NODE_COMMAND = f"sysctl -w {EXPIRE_NODEST_CONN}=1"
CHART_VALUE = "agent.sysctlWrites=true"


class GapCause(enum.StrEnum):
    """Why no policy sets the sysctl; also the condition's reason."""

    ACTION_DISABLED = "EnforceSysctlsDisabled"
    """No policy selecting the node enables enforceSysctls with expireNodestConn."""
    AGENT_CANNOT_WRITE = "AgentCannotWriteSysctls"
    """A policy would, but the node's agent reports /proc/sys read-only (an unprivileged container)."""


@dataclass(frozen=True)
class SysctlGap:
    node: str
    value: int
    cause: GapCause
    policies: tuple[str, ...]
    """The policies that select the node (none of them can fix it)."""
    udp_timeout_seconds: int

    @property
    def why(self) -> str:
        named = ", ".join(self.policies)
        if self.cause is GapCause.AGENT_CANNOT_WRITE:
            return (
                f"policy {named} enables enforceSysctls, but the agent on {self.node} cannot write sysctls "
                "(its container sees /proc/sys read-only)"
            )
        return f"no policy selecting {self.node} enables enforceSysctls (policy {named})"

    @property
    def consequence(self) -> str:
        return (
            f"a client's UDP flow to a removed backend keeps failing until the IPVS UDP timeout "
            f"({self.udp_timeout_seconds} s); no flush clears it, only the sysctl"
        )

    @property
    def fix(self) -> str:
        chart = (
            f"helm upgrade RELEASE --reuse-values --set {CHART_VALUE} (the agent container becomes privileged"
        )
        if self.cause is GapCause.ACTION_DISABLED:
            chart += (
                "; the chart's coredns policy then enables enforceSysctls: in a policy of your own set "
                "spec.actions.enforceSysctls.enabled: true)"
            )
        else:
            chart += ")"
        return f"{chart}, or on the node: {NODE_COMMAND} (persist it in /etc/sysctl.d)"

    def message(self) -> str:
        return (
            f"{EXPIRE_NODEST_CONN}={self.value} on {self.node} and ProxyMedic cannot set it: {self.why}. "
            f"Until it is 1, {self.consequence}. Fix: {self.fix}"
        )


def _enforces_expire_nodest_conn(policy: ProxyHealthPolicy) -> bool:
    enforce = policy.spec.actions.enforce_sysctls
    return enforce.enabled and enforce.expire_nodest_conn


def sysctl_gap(
    node: str, status: NodeProxyHealthStatus, policies: Iterable[ProxyHealthPolicy]
) -> SysctlGap | None:
    """The gap on this node given the policies that select it; None when there is none.

    A node no active policy selects has none: ProxyMedic was not asked to look after it. A policy
    in dry-run that enables the action is no gap either: its DryRun Events say what it would do.
    """
    value = status.sysctls.get(EXPIRE_NODEST_CONN)
    active = sorted((p for p in policies if not p.paused), key=lambda p: p.metadata.name)
    if status.proxy_mode is not ProxyMode.IPVS or value != 0 or not active:
        return None
    enforcing = [p for p in active if _enforces_expire_nodest_conn(p)]
    if enforcing and status.sysctls_writable is not False:
        return None
    cause = GapCause.AGENT_CANNOT_WRITE if enforcing else GapCause.ACTION_DISABLED
    udp = status.ipvs.udp_timeout_seconds if status.ipvs is not None else None
    return SysctlGap(
        node=node,
        value=value,
        cause=cause,
        policies=tuple(p.metadata.name for p in (enforcing or active)),
        udp_timeout_seconds=udp or DEFAULT_IPVS_UDP_TIMEOUT,
    )


def policy_condition(
    policy: str, gaps: Mapping[str, SysctlGap], now: datetime, generation: int | None
) -> Condition:
    """``SysctlNotEnforced`` on a policy: True while a node it selects has a gap."""
    mine = sorted((gap for gap in gaps.values() if policy in gap.policies), key=lambda gap: gap.node)
    if not mine:
        status, reason, message = ConditionStatus.FALSE, "NoGap", ""
    else:
        first = mine[0]
        nodes = ", ".join(gap.node for gap in mine[:10]) + (", …" if len(mine) > 10 else "")
        status, reason = ConditionStatus.TRUE, str(first.cause)
        count = f"{len(mine)} node" if len(mine) == 1 else f"{len(mine)} nodes"
        message = (
            f"{EXPIRE_NODEST_CONN}=0 on {count} this policy cannot fix ({nodes}): {first.why}. "
            f"Until it is 1, {first.consequence}. Fix: {first.fix}"
        )
    return Condition(
        type=CONDITION,
        status=status,
        reason=reason,
        message=message[:32768],
        last_transition_time=now,
        observed_generation=generation,
    )
