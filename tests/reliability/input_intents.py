"""Hostile RemediationIntents, as the agent's watch could hand them over: the tables the agent suite runs.

Each case is a raw JSON value and what the agent must do with it: ignore it (logged once, with the
field and the reason), skip it (valid, but not for this node or expired), or execute it with a given
outcome. Whatever happens, the live backend's real server and flows stay untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.unit.factories import intent, with_change

LIVE_IP = "10.244.2.7"
DEAD_IP = "10.244.1.5"
HUGE = 100_000
"""Items in a huge list: far beyond every bound the model sets."""
HUGE_TEXT = 10_000_000
"""Characters in a huge string (10 MB)."""


def base(**spec: Any) -> dict[str, Any]:
    """A valid flush intent for every node, live backend 10.244.2.7, unexpired at the test's clock."""
    raw = intent(**{"liveBackends": [LIVE_IP], **spec})
    raw["metadata"]["uid"] = "uid-hostile"
    return raw


def change(path: str, value: Any, **spec: Any) -> Callable[[], Any]:
    return lambda: with_change(base(**spec), path, value)


def without(path: str) -> Callable[[], Any]:
    def build() -> Any:
        raw = base()
        node: Any = raw
        *parents, last = path.split(".")
        for part in parents:
            node = node[part]
        del node[last]
        return raw

    return build


def replaced(value: Any) -> Callable[[], Any]:
    return lambda: copy.deepcopy(value)


def ips(count: int, prefix: str = "10.200") -> list[str]:
    return [f"{prefix}.{i // 256 % 256}.{i % 256}" for i in range(count)]


@dataclass(frozen=True)
class Ignored:
    """The model rejects it: the agent logs the field path and the reason once, and changes nothing."""

    field: str
    reason: str


IGNORED: dict[str, tuple[Callable[[], Any], Ignored]] = {
    # live backends listed as dead
    "dead-is-live": (
        change("spec.deadBackends", [LIVE_IP]),
        Ignored("spec", "deadBackends and liveBackends overlap: 10.244.2.7"),
    ),
    "dead-is-live-spelled-differently": (
        change(
            "spec.deadBackends",
            ["FD00:244:0:0::7"],
            liveBackends=["fd00:244::7"],
            service={
                "namespace": "kube-system",
                "name": "kube-dns",
                "clusterIPs": ["fd00::10"],
                "ports": [{"protocol": "UDP", "port": 53, "targetPort": 53}],
            },
        ),
        Ignored("spec", "overlap: fd00:244::7"),
    ),
    # unknown or mistyped actions and steps
    "unknown-action": (change("spec.action", "DeleteEverything"), Ignored("spec.action", "Input should be")),
    "action-wrong-case": (
        change("spec.action", "flushstalebackends"),
        Ignored("spec.action", "Input should be"),
    ),
    "action-a-number": (change("spec.action", 7), Ignored("spec.action", "Input should be")),
    "action-null": (change("spec.action", None), Ignored("spec.action", "Input should be")),
    "unknown-step": (change("spec.steps", ["RemoveEverything"]), Ignored("spec.steps[0]", "Input should be")),
    "sysctl-not-allowed": (
        change("spec.parameters", {"sysctls": {"kernel.panic": 1}}, action="EnforceSysctls", steps=[]),
        Ignored("spec", "parameters.sysctls may only set"),
    ),
    "sysctl-path-traversal": (
        change("spec.parameters", {"sysctls": {"../../../etc/passwd": 1}}, action="EnforceSysctls", steps=[]),
        Ignored("spec", "parameters.sysctls may only set"),
    ),
    "unknown-field": (
        change("spec.command", "rm -rf /"),
        Ignored("spec.command", "unknown field"),
    ),
    # expiry that cannot be
    "expires-before-decided": (
        change("spec.expiresAt", "2026-11-22T09:00:00Z"),
        Ignored("spec", "expiresAt must be later than decidedAt"),
    ),
    "decided-at-garbage": (change("spec.decidedAt", "yesterday"), Ignored("spec.decidedAt", "datetime")),
    # malformed objects, raw from the watch
    "no-spec": (without("spec"), Ignored("spec", "Field required")),
    "spec-null": (change("spec", None), Ignored("spec", "valid dictionary")),
    "spec-a-list": (change("spec", [1, 2]), Ignored("spec", "valid dictionary")),
    "no-metadata": (without("metadata"), Ignored("metadata", "Field required")),
    "metadata-a-string": (change("metadata", "node-1"), Ignored("metadata", "valid dictionary")),
    "name-a-number": (change("metadata.name", 7), Ignored("metadata.name", "valid string")),
    "object-a-list": (replaced([base()]), Ignored("(object)", "valid dictionary")),
    "object-a-string": (replaced("RemediationIntent"), Ignored("(object)", "valid dictionary")),
    "object-null": (replaced(None), Ignored("(object)", "valid dictionary")),
    "object-empty": (replaced({}), Ignored("metadata", "Field required")),
    "wrong-api-version": (change("apiVersion", "proxymedic.io/v2"), Ignored("apiVersion", "Input should be")),
    "wrong-kind": (change("kind", "Pod"), Ignored("kind", "Input should be")),
    "dead-not-an-ip": (
        change("spec.deadBackends", ["10.244.1.300"]),
        Ignored("spec.deadBackends[0]", "is not an IPv4"),
    ),
    "dead-a-string": (change("spec.deadBackends", DEAD_IP), Ignored("spec.deadBackends", "valid list")),
    "port-out-of-range": (
        change("spec.service.ports", [{"port": 70000, "targetPort": 53}]),
        Ignored("spec.service.ports[0].port", "less than or equal to 65535"),
    ),
    "port-zero": (
        change("spec.service.ports", [{"port": 53, "targetPort": 0}]),
        Ignored("spec.service.ports[0].targetPort", "greater than or equal to 1"),
    ),
    "udp-timeout-absurd": (
        change("spec.parameters", {"udpTimeoutSeconds": 10**12}, action="SetIPVSUDPTimeout", steps=[]),
        Ignored("spec.parameters.udpTimeoutSeconds", "less than or equal to 86400"),
    ),
    "all-nodes-and-names": (change("spec.nodeNames", ["node-1"]), Ignored("spec", "exactly one of allNodes")),
    "dry-run-not-a-bool": (change("spec.dryRun", "sometimes"), Ignored("spec.dryRun", "expected a boolean")),
    # huge lists and strings: refused by the bounds, quickly
    "huge-dead-list": (
        change("spec.deadBackends", ips(HUGE)),
        Ignored("spec.deadBackends", "at most 256 items"),
    ),
    "huge-live-list": (
        change("spec.liveBackends", ips(HUGE, "10.100")),
        Ignored("spec.liveBackends", "at most 1024 items"),
    ),
    "huge-node-list": (
        change("spec.nodeNames", [f"node-{i}" for i in range(HUGE)], allNodes=False),
        Ignored("spec.nodeNames", "at most 5000 items"),
    ),
    "huge-port-list": (
        change("spec.service.ports", [{"port": 1 + i % 65535, "targetPort": 53} for i in range(HUGE)]),
        Ignored("spec.service.ports", "at most 64 items"),
    ),
    "huge-reason": (
        change("spec.reason", "x" * HUGE_TEXT),
        Ignored("spec.reason", "at most 1024 characters"),
    ),
    "huge-name": (
        change("metadata.name", "n" * HUGE_TEXT),
        Ignored("metadata.name", "must be 1 to 253 characters"),
    ),
}

SKIPPED: dict[str, Callable[[], Any]] = {
    "expired": change("spec.expiresAt", "2026-11-22T10:00:01Z"),
    "other-node": change("spec.nodeNames", ["node-2"], allNodes=False),
    "selector-not-matching": change("spec.nodeSelector", {"matchLabels": {"pool": "other"}}),
}
"""Valid intents the agent must not apply: expired, or addressed elsewhere (the clock is 10:00:05)."""

DUAL_STACK_SERVICE = {
    "namespace": "kube-system",
    "name": "kube-dns",
    "clusterIPs": ["10.96.0.10", "fd00::10"],
    "ports": [{"protocol": "UDP", "port": 53, "targetPort": 53}],
}
IPV6_SERVICE = {**DUAL_STACK_SERVICE, "clusterIPs": ["fd00::10"]}

EXECUTED: dict[str, tuple[Callable[[], Any], str, str]] = {
    "ipv6-dead-for-ipv4-vip": (change("spec.deadBackends", ["fd00:244::5"]), "AlreadyClean", "nothing to do"),
    "ipv4-dead-for-ipv6-vip": (
        change("spec.service", IPV6_SERVICE, deadBackends=[DEAD_IP], liveBackends=["fd00:244::7"]),
        "AlreadyClean",
        "nothing to do",
    ),
    "dual-stack-both-families-dead": (
        change("spec.service", DUAL_STACK_SERVICE, deadBackends=[DEAD_IP, "fd00:244::5"]),
        "Applied",
        "removed real server 10.244.1.5:53",
    ),
    "vip-listed-as-dead": (change("spec.deadBackends", ["10.96.0.10"]), "AlreadyClean", "nothing to do"),
    "largest-allowed": (
        change(
            "spec.service",
            {**DUAL_STACK_SERVICE, "ports": [{"port": 53 + i, "targetPort": 53 + i} for i in range(64)]},
            deadBackends=[DEAD_IP, *ips(255, "10.201")],
            liveBackends=[LIVE_IP, *ips(1023, "10.202")],
        ),
        "Applied",
        "removed real server 10.244.1.5:53",
    ),
}
"""Valid but hostile intents the agent executes: foreign address families, the VIP itself, the bounds."""
