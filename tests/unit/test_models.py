"""Each kind rejects bad input with a message naming the field and the reason, and defaults are safe."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from proxymedic.api.errors import InvalidObjectError, parse_object
from proxymedic.api.intent import RemediationIntent
from proxymedic.api.meta import resource_dict
from proxymedic.api.policy import ProxyHealthPolicy
from proxymedic.api.types import format_duration, format_elapsed, parse_duration, resolve_count_or_percent
from tests.unit.factories import intent, node_health, policy, with_change

pytestmark = pytest.mark.unit

# (id, object, field path named in the message, words of the reason)
INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    # ProxyHealthPolicy
    (
        "policy-bad-duration",
        with_change(policy(), "spec.guardrails.nodeCooldown", "5 min"),
        "spec.guardrails.nodeCooldown",
        "is not a duration",
    ),
    (
        "policy-duration-out-of-range",
        with_change(policy(), "spec.guardrails.nodeCooldown", "48h"),
        "spec.guardrails.nodeCooldown",
        "must be between 0s and 24h",
    ),
    (
        "policy-percentage-over-100",
        with_change(policy(), "spec.guardrails.maxConcurrentKubeProxyRestarts", "150%"),
        "spec.guardrails.maxConcurrentKubeProxyRestarts",
        "percentage between 0% and 100%",
    ),
    (
        "policy-negative-count",
        with_change(policy(), "spec.guardrails.maxConcurrentKubeProxyRestarts", -1),
        "spec.guardrails.maxConcurrentKubeProxyRestarts",
        "negative",
    ),
    (
        "policy-anomaly-percent",
        with_change(policy(), "spec.guardrails.anomalyThresholdPercent", 101),
        "spec.guardrails.anomalyThresholdPercent",
        "less than or equal to 100",
    ),
    (
        "policy-window-bad-time",
        with_change(policy(), "spec.guardrails.maintenanceWindows", [{"start": "24:30", "end": "02:00"}]),
        "spec.guardrails.maintenanceWindows[0].start",
        "HH:MM",
    ),
    (
        "policy-window-empty",
        with_change(policy(), "spec.guardrails.maintenanceWindows", [{"start": "02:00", "end": "02:00"}]),
        "spec.guardrails.maintenanceWindows[0]",
        "start and end must differ",
    ),
    (
        "policy-window-zone",
        with_change(
            policy(),
            "spec.guardrails.maintenanceWindows",
            [{"start": "01:00", "end": "02:00", "timeZone": "Mars/Olympus"}],
        ),
        "spec.guardrails.maintenanceWindows[0].timeZone",
        "not a known IANA time zone",
    ),
    (
        "policy-protocol",
        with_change(policy(), "spec.services.protocols", ["DNS"]),
        "spec.services.protocols[0]",
        "'UDP', 'TCP' or 'SCTP'",
    ),
    (
        "policy-namespace-name",
        with_change(policy(), "spec.services.namespaces", ["Kube_System"]),
        "spec.services.namespaces[0]",
        "not a valid name",
    ),
    (
        "policy-selector-values",
        with_change(
            policy(), "spec.services.labelSelector", {"matchExpressions": [{"key": "a", "operator": "In"}]}
        ),
        "spec.services.labelSelector.matchExpressions[0]",
        "values must be non-empty",
    ),
    (
        "policy-unknown-field",
        with_change(policy(), "spec.guardrails.dryrun", True),
        "spec.guardrails.dryrun",
        "unknown field",
    ),
    (
        # YAML's "false" in quotes is a string: the CRD's boolean type rejects it, so the models do too.
        "policy-boolean-a-string",
        with_change(policy(), "spec.guardrails.dryRun", "false"),
        "spec.guardrails.dryRun",
        "expected a boolean (true or false), got 'false': write false without quotes",
    ),
    (
        "policy-boolean-a-number",
        with_change(policy(), "spec.actions.flushStaleConnections.enabled", 1),
        "spec.actions.flushStaleConnections.enabled",
        "expected a boolean (true or false), got 1",
    ),
    (
        "policy-budget-node-over-cluster",
        with_change(policy(), "spec.guardrails.hourlyBudget", {"perNode": 50, "perCluster": 10}),
        "spec.guardrails.hourlyBudget",
        "perNode (50) must not exceed perCluster (10)",
    ),
    (
        "policy-conntrack-ceiling-missing",
        with_change(policy(), "spec.actions.raiseConntrackMax", {"enabled": True}),
        "spec.actions.raiseConntrackMax",
        "ceiling is required",
    ),
    # RemediationIntent
    (
        "intent-bad-vip",
        with_change(intent(), "spec.service.clusterIPs", ["10.96.0.300"]),
        "spec.service.clusterIPs[0]",
        "not an IPv4 or IPv6 address",
    ),
    (
        "intent-bad-backend",
        with_change(intent(), "spec.deadBackends", ["pod-a"]),
        "spec.deadBackends[0]",
        "not an IPv4 or IPv6 address",
    ),
    (
        "intent-port-range",
        with_change(intent(), "spec.service.ports.0.port", 70000),
        "spec.service.ports[0].port",
        "less than or equal to 65535",
    ),
    (
        "intent-port-zero",
        with_change(intent(), "spec.service.ports.0.targetPort", 0),
        "spec.service.ports[0].targetPort",
        "greater than or equal to 1",
    ),
    (
        "intent-dead-is-live",
        with_change(intent(), "spec.liveBackends", ["10.244.1.5"]),
        "spec",
        "deadBackends and liveBackends overlap: 10.244.1.5",
    ),
    (
        "intent-no-nodes",
        with_change(intent(), "spec.allNodes", False),
        "spec",
        "exactly one of allNodes or nodeNames",
    ),
    (
        "intent-both-nodes",
        with_change(intent(), "spec.nodeNames", ["node-1"]),
        "spec",
        "exactly one of allNodes or nodeNames",
    ),
    (
        "intent-flush-without-dead",
        with_change(intent(), "spec.deadBackends", []),
        "spec",
        "at least one dead backend",
    ),
    (
        "intent-unknown-action",
        with_change(intent(), "spec.action", "DeleteVirtualService"),
        "spec.action",
        "Input should be",
    ),
    (
        "intent-dry-run-a-string",
        with_change(intent(), "spec.dryRun", "true"),
        "spec.dryRun",
        "expected a boolean (true or false), got 'true'",
    ),
    (
        "intent-expiry-before-decision",
        with_change(intent(), "spec.expiresAt", "2026-11-22T09:00:00Z"),
        "spec",
        "expiresAt must be later than decidedAt",
    ),
    (
        "intent-timeout-missing",
        with_change(intent(), "spec.action", "SetIPVSUDPTimeout"),
        "spec",
        "udpTimeoutSeconds is required",
    ),
    (
        "intent-sysctl-not-allowed",
        with_change(
            with_change(intent(), "spec.action", "EnforceSysctls"),
            "spec.parameters",
            {"sysctls": {"kernel.panic": 1}},
        ),
        "spec",
        "may only set",
    ),
    # NodeProxyHealth
    (
        "health-bad-mode",
        with_change(node_health(), "status.proxyMode", "userspace"),
        "status.proxyMode",
        "'ipvs', 'iptables', 'nftables' or 'unknown'",
    ),
    (
        "health-bad-freshness",
        with_change(node_health(), "status.kubeProxy.freshness", "Maybe"),
        "status.kubeProxy.freshness",
        "'Fresh', 'Stale' or 'Unknown'",
    ),
    (
        "health-bad-vip",
        with_change(node_health(), "status.virtualServers.0.vip", "10.96.0"),
        "status.virtualServers[0].vip",
        "not an IPv4 or IPv6 address",
    ),
    (
        "health-negative-count",
        with_change(node_health(), "status.conntrack.count", -5),
        "status.conntrack.count",
        "greater than or equal to 0",
    ),
    (
        "health-bad-outcome",
        with_change(node_health(), "status.recentResults.0.outcome", "Done"),
        "status.recentResults[0].outcome",
        "'Applied', 'AlreadyClean', 'DryRun', 'Refused' or 'Failed'",
    ),
    (
        "health-rs-port",
        with_change(node_health(), "status.virtualServers.0.realServers.0.port", 65536),
        "status.virtualServers[0].realServers[0].port",
        "less than or equal to 65535",
    ),
    (
        "health-bad-time",
        with_change(node_health(), "status.observedAt", "yesterday"),
        "status.observedAt",
        "datetime",
    ),
]


@pytest.mark.parametrize(
    ("obj", "field", "reason"), [case[1:] for case in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_input_is_rejected_naming_field_and_reason(
    obj: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(InvalidObjectError) as caught:
        parse_object(obj)
    matching = [problem for problem in caught.value.problems if problem.startswith(f"{field}: ")]
    assert matching, f"no problem names {field!r}: {caught.value.problems}"
    assert any(reason in problem for problem in matching), caught.value.problems


def test_every_kind_has_at_least_five_kinds_of_bad_input() -> None:
    per_kind: dict[str, int] = {}
    for _, obj, _, _ in INVALID:
        per_kind[obj["kind"]] = per_kind.get(obj["kind"], 0) + 1
    assert per_kind == {
        kind: per_kind[kind] for kind in ("ProxyHealthPolicy", "RemediationIntent", "NodeProxyHealth")
    }
    assert min(per_kind.values()) >= 5


@pytest.mark.parametrize("make", [policy, intent, node_health], ids=["policy", "intent", "health"])
def test_valid_examples_round_trip(make: Any) -> None:
    obj = parse_object(make())
    again = parse_object(resource_dict(obj))
    assert again == obj


def test_unknown_kind_is_named() -> None:
    with pytest.raises(InvalidObjectError, match="kind: must be one of ProxyHealthPolicy"):
        parse_object({"kind": "Pod", "metadata": {"name": "x"}})


def test_policy_without_actions_does_nothing() -> None:
    empty = ProxyHealthPolicy.model_validate({"metadata": {"name": "observe-only"}})
    assert not empty.spec.actions.any_enabled()
    assert empty.spec.services.protocols == ["UDP"]
    assert not empty.spec.guardrails.dry_run
    assert not empty.paused


def test_dry_run_is_one_field_and_pause_one_annotation() -> None:
    dry = ProxyHealthPolicy.model_validate(policy())
    assert dry.spec.guardrails.dry_run
    paused = ProxyHealthPolicy.model_validate(
        with_change(policy(), "metadata.annotations", {"proxymedic.io/paused": "true"})
    )
    assert paused.paused


def test_intent_addresses_nodes() -> None:
    to_all = RemediationIntent.model_validate(intent())
    assert to_all.spec.addresses("any-node", {})
    some = RemediationIntent.model_validate(
        with_change(with_change(intent(), "spec.allNodes", False), "spec.nodeNames", ["node-1"])
    )
    assert some.spec.addresses("node-1", {})
    assert not some.spec.addresses("node-2", {})
    linux = RemediationIntent.model_validate(
        with_change(intent(), "spec.nodeSelector", {"matchLabels": {"kubernetes.io/os": "linux"}})
    )
    assert linux.spec.addresses("node-3", {"kubernetes.io/os": "linux"})
    assert not linux.spec.addresses("node-4", {"kubernetes.io/os": "windows"})


def test_node_selector_needs_all_nodes() -> None:
    obj = with_change(with_change(intent(), "spec.allNodes", False), "spec.nodeNames", ["node-1"])
    with pytest.raises(InvalidObjectError, match="nodeSelector narrows allNodes"):
        parse_object(with_change(obj, "spec.nodeSelector", {"matchLabels": {"a": "b"}}))


def test_ip_addresses_are_canonical() -> None:
    obj = RemediationIntent.model_validate(
        with_change(intent(), "spec.service.clusterIPs", ["10.96.0.10", "FD00:0:0:0::A"])
    )
    assert obj.spec.service is not None
    assert obj.spec.service.cluster_ips == ["10.96.0.10", "fd00::a"]


@pytest.mark.parametrize(
    ("text", "seconds", "canonical"),
    [
        ("30s", 30, "30s"),
        ("90s", 90, "1m30s"),
        ("1h30m", 5400, "1h30m"),
        ("250ms", 0.25, "250ms"),
        ("0s", 0, "0s"),
    ],
)
def test_durations_parse_and_print_in_go_syntax(text: str, seconds: float, canonical: str) -> None:
    value = parse_duration(text)
    assert value == timedelta(seconds=seconds)
    assert format_duration(value) == canonical


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.0134, "13ms"), (0.9994, "999ms"), (5.546, "5.5s"), (6.035, "6.0s"), (59.96, "1m"), (83.4, "1m23s")],
)
def test_measured_times_print_rounded(seconds: float, shown: str) -> None:
    assert format_elapsed(timedelta(seconds=seconds)) == shown


@pytest.mark.parametrize(
    ("value", "total", "count"),
    [(2, 100, 2), ("10%", 100, 10), ("10%", 5, 1), ("0%", 50, 0), ("100%", 7, 7), ("33%", 10, 3)],
)
def test_count_or_percent_resolves_against_node_count(value: int | str, total: int, count: int) -> None:
    assert resolve_count_or_percent(value, total) == count
