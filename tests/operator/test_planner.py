"""Which policy governs a Service, and the intent a Service change calls for."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from proxymedic.api.intent import FlushStep, IntentAction
from proxymedic.api.policy import ProxyHealthPolicy
from proxymedic.operator.backends import ServiceInfo, ServicePortInfo, ServiceRef
from proxymedic.operator.planner import covering_policy, flush_steps, plan_backend_flush, policy_covers

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
DNS = ServiceInfo(
    ref=ServiceRef("kube-system", "kube-dns"),
    uid="uid-1",
    labels={"k8s-app": "kube-dns"},
    cluster_ips=("10.96.0.10",),
    ports=(ServicePortInfo("dns", "UDP", 53, 53), ServicePortInfo("dns-tcp", "TCP", 53, 53)),
)


def policy(name: str = "coredns", **spec: Any) -> ProxyHealthPolicy:
    return ProxyHealthPolicy.model_validate({"metadata": {"name": name}, "spec": spec})


@pytest.mark.parametrize(
    ("spec", "covers"),
    [
        ({}, True),
        ({"services": {"namespaces": ["kube-system"]}}, True),
        ({"services": {"namespaces": ["default"]}}, False),
        ({"services": {"labelSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}}, True),
        ({"services": {"labelSelector": {"matchLabels": {"k8s-app": "other"}}}}, False),
        ({"services": {"protocols": ["SCTP"]}}, False),
        ({"services": {"protocols": ["TCP"]}}, True),
    ],
    ids=["everything", "namespace", "other-namespace", "labels", "other-labels", "protocol-absent", "tcp"],
)
def test_policy_coverage(spec: dict[str, Any], covers: bool) -> None:
    assert policy_covers(policy(**spec), DNS) is covers


def test_first_policy_by_name_governs() -> None:
    chosen = covering_policy(
        [policy("zeta"), policy("alpha"), policy("nope", services={"namespaces": ["x"]})], DNS
    )
    assert chosen is not None
    assert chosen.metadata.name == "alpha"


def test_steps_follow_enabled_actions() -> None:
    assert flush_steps(policy(), remove_real_servers=True) == []
    everything = policy(
        actions={"flushStaleConnections": {"enabled": True}, "flushStaleConntrack": {"enabled": True}}
    )
    assert flush_steps(everything, remove_real_servers=True) == [
        FlushStep.REMOVE_REAL_SERVERS,
        FlushStep.FLUSH_CONNECTIONS,
        FlushStep.DELETE_CONNTRACK,
    ]
    assert flush_steps(everything, remove_real_servers=False) == [
        FlushStep.FLUSH_CONNECTIONS,
        FlushStep.DELETE_CONNTRACK,
    ]


def test_flush_intent_is_level_based_and_udp_only() -> None:
    chosen = policy(
        actions={"flushStaleConnections": {"enabled": True}},
        guardrails={"dryRun": True},
        nodes={"labelSelector": {"matchLabels": {"pool": "a"}}},
    )
    draft = plan_backend_flush(
        chosen,
        DNS,
        {"dns": 53, "dns-tcp": 53},
        frozenset({"10.0.0.1"}),
        frozenset({"10.0.0.2", "10.0.0.3"}),
        NOW,
    )
    assert draft is not None
    spec = draft.spec
    assert spec.action is IntentAction.FLUSH_STALE_BACKENDS
    assert spec.dead_backends == ["10.0.0.1"]
    assert spec.live_backends == ["10.0.0.2", "10.0.0.3"]
    assert spec.service is not None
    assert [(p.port, p.protocol, p.target_port) for p in spec.service.ports] == [(53, "UDP", 53)]
    assert spec.all_nodes
    assert spec.node_selector is not None
    assert spec.dry_run
    assert spec.expires_at > spec.decided_at
    assert draft.name.startswith("kube-dns-flush-")


def test_drift_repair_targets_one_node() -> None:
    chosen = policy(actions={"removeStaleRealServers": {"enabled": True}})
    draft = plan_backend_flush(
        chosen, DNS, {"dns": 53}, frozenset({"10.0.0.1"}), frozenset({"10.0.0.2"}), NOW, node_names=["node-3"]
    )
    assert draft is not None
    assert not draft.spec.all_nodes
    assert draft.spec.node_names == ["node-3"]
    assert draft.spec.steps == [FlushStep.REMOVE_REAL_SERVERS]


@pytest.mark.parametrize(
    ("actions", "dead", "live"),
    [
        ({}, {"10.0.0.1"}, set()),
        ({"flushStaleConnections": {"enabled": True}}, set(), {"10.0.0.2"}),
        ({"flushStaleConnections": {"enabled": True}}, {"10.0.0.2"}, {"10.0.0.2"}),
    ],
    ids=["no-action-enabled", "nothing-dead", "dead-is-live"],
)
def test_no_intent_when_nothing_to_do(actions: dict[str, Any], dead: set[str], live: set[str]) -> None:
    assert (
        plan_backend_flush(policy(actions=actions), DNS, {"dns": 53}, frozenset(dead), frozenset(live), NOW)
        is None
    )
