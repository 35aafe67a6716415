"""When a node's expire_nodest_conn=0 is left unfixed, and what ProxyMedic says about it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from proxymedic.api.health import NodeProxyHealth, NodeProxyHealthStatus
from proxymedic.api.meta import ConditionStatus
from proxymedic.api.policy import ProxyHealthPolicy
from proxymedic.operator.sysctl_gaps import GapCause, policy_condition, sysctl_gap
from tests.unit.factories import node_health, policy

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def status(**changes: Any) -> NodeProxyHealthStatus:
    fields = {"sysctls": {"net.ipv4.vs.expire_nodest_conn": 0}, **changes}
    health = NodeProxyHealth.model_validate(node_health(**fields))
    assert health.status is not None
    return health.status


def policy_with(
    name: str = "coredns", *, enforce: dict[str, Any] | None = None, **guardrails: Any
) -> ProxyHealthPolicy:
    actions: dict[str, Any] = {"flushStaleConnections": {"enabled": True}}
    if enforce is not None:
        actions["enforceSysctls"] = enforce
    body = policy(actions=actions, guardrails={"dryRun": False, **guardrails})
    body["metadata"]["name"] = name
    return ProxyHealthPolicy.model_validate(body)


def test_a_policy_without_enforce_sysctls_leaves_it_unfixed() -> None:
    gap = sysctl_gap("node-1", status(), [policy_with()])
    assert gap is not None
    assert (gap.cause, gap.policies, gap.value, gap.udp_timeout_seconds) == (
        GapCause.ACTION_DISABLED,
        ("coredns",),
        0,
        300,
    )
    assert gap.message() == (
        "net.ipv4.vs.expire_nodest_conn=0 on node-1 and ProxyMedic cannot set it: no policy selecting node-1 "
        "enables enforceSysctls (policy coredns). Until it is 1, a client's UDP flow to a removed backend "
        "keeps failing until the IPVS UDP timeout (300 s); no flush clears it, only the sysctl. Fix: helm "
        "upgrade RELEASE --reuse-values --set agent.sysctlWrites=true (the agent container becomes "
        "privileged; the chart's coredns policy then enables enforceSysctls: in a policy of your own set "
        "spec.actions.enforceSysctls.enabled: true), or on the node: sysctl -w "
        "net.ipv4.vs.expire_nodest_conn=1 (persist it in /etc/sysctl.d)"
    )


def test_an_agent_that_cannot_write_sysctls_leaves_it_unfixed() -> None:
    gap = sysctl_gap("node-1", status(sysctlsWritable=False), [policy_with(enforce={"enabled": True})])
    assert gap is not None
    assert gap.cause is GapCause.AGENT_CANNOT_WRITE
    assert "the agent on node-1 cannot write sysctls" in gap.message()
    assert "--set agent.sysctlWrites=true (the agent container becomes privileged), or on the node" in gap.fix


def test_the_udp_timeout_named_is_the_nodes() -> None:
    timeouts = {"tcpTimeoutSeconds": 900, "tcpFinTimeoutSeconds": 120, "udpTimeoutSeconds": 30}
    gap = sysctl_gap("node-1", status(ipvs=timeouts), [policy_with()])
    assert gap is not None
    assert "until the IPVS UDP timeout (30 s)" in gap.message()


@pytest.mark.parametrize(
    ("changes", "policies"),
    [
        ({"sysctls": {"net.ipv4.vs.expire_nodest_conn": 1}}, [policy_with()]),
        ({"sysctls": {}}, [policy_with()]),  # unknown is not 0
        ({"proxyMode": "iptables"}, [policy_with()]),
        ({}, []),  # no policy selects the node: ProxyMedic was not asked to look after it
        ({}, [policy_with(paused=True)]),
        ({}, [policy_with(enforce={"enabled": True})]),  # the ladder sets it
        ({"sysctlsWritable": True}, [policy_with(enforce={"enabled": True})]),
        ({}, [policy_with(), policy_with("other", enforce={"enabled": True})]),  # another policy sets it
    ],
    ids=["is-1", "unknown", "iptables", "no-policy", "paused", "enforced", "enforced-writable", "another"],
)
def test_no_gap(changes: dict[str, Any], policies: list[ProxyHealthPolicy]) -> None:
    assert sysctl_gap("node-1", status(**changes), policies) is None


def test_a_policy_that_enforces_only_the_other_sysctl_leaves_it_unfixed() -> None:
    enforce = {"enabled": True, "expireNodestConn": False}
    gap = sysctl_gap("node-1", status(), [policy_with(enforce=enforce)])
    assert gap is not None
    assert gap.cause is GapCause.ACTION_DISABLED


def test_the_policy_condition_names_the_nodes_it_cannot_fix() -> None:
    gaps = {
        node: gap
        for node in ("node-2", "node-1")
        if (gap := sysctl_gap(node, status(), [policy_with()])) is not None
    }
    mine = policy_condition("coredns", gaps, NOW, 3)
    assert (mine.type, mine.status, mine.reason, mine.observed_generation) == (
        "SysctlNotEnforced",
        ConditionStatus.TRUE,
        "EnforceSysctlsDisabled",
        3,
    )
    assert mine.message.startswith(
        "net.ipv4.vs.expire_nodest_conn=0 on 2 nodes this policy cannot fix (node-1, node-2): "
    )
    other = policy_condition("other", gaps, NOW, 1)
    assert (other.status, other.reason, other.message) == (ConditionStatus.FALSE, "NoGap", "")
