"""Invalid values for every field of a ProxyHealthPolicy spec: the table the policy suite runs.

Each case: the dotted path changed, the value put there, the field path the error must name, words of
the reason, and whether the generated CRD can say the same rule (then the API server, served by the
emulator with crds/, must answer 422 naming that field too). Where it cannot, MODEL_ONLY says why.
"""

from __future__ import annotations

from typing import Any

HUGE_TEXT = "a" * 100_000
WINDOW = {"start": "02:00", "end": "04:00"}

# id: (path, value, field named, reason words)
POLICY_CASES: dict[str, tuple[str, Any, str, str]] = {
    # services
    "namespaces-not-a-list": (
        "spec.services.namespaces",
        "kube-system",
        "spec.services.namespaces",
        "valid list",
    ),
    "namespace-bad-name": (
        "spec.services.namespaces",
        ["Kube_System"],
        "spec.services.namespaces[0]",
        "not a valid name",
    ),
    "namespace-huge": (
        "spec.services.namespaces",
        [HUGE_TEXT],
        "spec.services.namespaces[0]",
        "1 to 63 characters",
    ),
    "namespaces-too-many": (
        "spec.services.namespaces",
        [f"ns-{i}" for i in range(10_000)],
        "spec.services.namespaces",
        "at most 64 items",
    ),
    "service-selector-a-string": (
        "spec.services.labelSelector",
        "k8s-app=kube-dns",
        "spec.services.labelSelector",
        "valid dictionary",
    ),
    "match-label-not-a-string": (
        "spec.services.labelSelector.matchLabels",
        {"k8s-app": 5},
        "spec.services.labelSelector.matchLabels.k8s-app",
        "valid string",
    ),
    "match-label-value-too-long": (
        "spec.services.labelSelector.matchLabels",
        {"k8s-app": "v" * 64},
        "spec.services.labelSelector.matchLabels.k8s-app",
        "at most 63 characters",
    ),
    "match-expression-bad-operator": (
        "spec.services.labelSelector.matchExpressions",
        [{"key": "tier", "operator": "Near", "values": ["x"]}],
        "spec.services.labelSelector.matchExpressions[0].operator",
        "Input should be",
    ),
    "match-expression-in-without-values": (
        "spec.services.labelSelector.matchExpressions",
        [{"key": "tier", "operator": "In"}],
        "spec.services.labelSelector.matchExpressions[0]",
        "values must be non-empty",
    ),
    "match-expression-exists-with-values": (
        "spec.services.labelSelector.matchExpressions",
        [{"key": "tier", "operator": "Exists", "values": ["x"]}],
        "spec.services.labelSelector.matchExpressions[0]",
        "values must be empty",
    ),
    "match-expressions-too-many": (
        "spec.services.labelSelector.matchExpressions",
        [{"key": f"k{i}", "operator": "Exists"} for i in range(33)],
        "spec.services.labelSelector.matchExpressions",
        "at most 32 items",
    ),
    "protocol-unknown": (
        "spec.services.protocols",
        ["ICMP"],
        "spec.services.protocols[0]",
        "Input should be",
    ),
    "protocols-empty": ("spec.services.protocols", [], "spec.services.protocols", "at least 1 item"),
    "protocols-repeated": ("spec.services.protocols", ["UDP", "UDP"], "spec.services", "must not repeat"),
    # nodes
    "node-selector-a-number": ("spec.nodes.labelSelector", 7, "spec.nodes.labelSelector", "valid dictionary"),
    "node-selector-unknown-field": (
        "spec.nodes.labelSelector.matchFields",
        {"a": "b"},
        "spec.nodes.labelSelector.matchFields",
        "unknown field",
    ),
    # actions
    "flush-enabled-not-a-bool": (
        "spec.actions.flushStaleConnections.enabled",
        "maybe",
        "spec.actions.flushStaleConnections.enabled",
        "expected a boolean",
    ),
    "flush-not-an-object": (
        "spec.actions.flushStaleConnections",
        True,
        "spec.actions.flushStaleConnections",
        "valid dictionary",
    ),
    "remove-enabled-a-list": (
        "spec.actions.removeStaleRealServers.enabled",
        [],
        "spec.actions.removeStaleRealServers.enabled",
        "expected a boolean",
    ),
    "restart-enabled-an-object": (
        "spec.actions.restartKubeProxy.enabled",
        {},
        "spec.actions.restartKubeProxy.enabled",
        "expected a boolean",
    ),
    "stale-after-negative": (
        "spec.actions.restartKubeProxy.staleAfter",
        "-10s",
        "spec.actions.restartKubeProxy.staleAfter",
        "is not a duration",
    ),
    "stale-after-too-short": (
        "spec.actions.restartKubeProxy.staleAfter",
        "5s",
        "spec.actions.restartKubeProxy.staleAfter",
        "between 10s and 1h",
    ),
    "stale-after-too-long": (
        "spec.actions.restartKubeProxy.staleAfter",
        "1h1s",
        "spec.actions.restartKubeProxy.staleAfter",
        "between 10s and 1h",
    ),
    "stale-after-a-number": (
        "spec.actions.restartKubeProxy.staleAfter",
        90,
        "spec.actions.restartKubeProxy.staleAfter",
        "is not a duration",
    ),
    "stale-after-huge": (
        "spec.actions.restartKubeProxy.staleAfter",
        "1" * 10_000 + "s",
        "spec.actions.restartKubeProxy.staleAfter",
        "is not a duration",
    ),
    "stale-after-overflow": (
        "spec.actions.restartKubeProxy.staleAfter",
        "9" * 30 + "s",
        "spec.actions.restartKubeProxy.staleAfter",
        "is out of range",
    ),
    "target-namespace-traversal": (
        "spec.actions.restartKubeProxy.target.namespace",
        "../kube-system",
        "spec.actions.restartKubeProxy.target.namespace",
        "not a valid name",
    ),
    "target-namespace-empty": (
        "spec.actions.restartKubeProxy.target.namespace",
        "",
        "spec.actions.restartKubeProxy.target.namespace",
        "1 to 63 characters",
    ),
    "target-selector-bad-operator": (
        "spec.actions.restartKubeProxy.target.labelSelector.matchExpressions",
        [{"key": "k8s-app", "operator": "in", "values": ["kube-proxy"]}],
        "spec.actions.restartKubeProxy.target.labelSelector.matchExpressions[0].operator",
        "Input should be",
    ),
    "udp-timeout-enabled-two": (
        "spec.actions.ipvsUDPTimeout.enabled",
        2,
        "spec.actions.ipvsUDPTimeout.enabled",
        "expected a boolean",
    ),
    "udp-timeout-zero": (
        "spec.actions.ipvsUDPTimeout.timeout",
        "0s",
        "spec.actions.ipvsUDPTimeout.timeout",
        "between 1s and 1h",
    ),
    "udp-timeout-days": (
        "spec.actions.ipvsUDPTimeout.timeout",
        "1d",
        "spec.actions.ipvsUDPTimeout.timeout",
        "is not a duration",
    ),
    "sysctls-enabled-text": (
        "spec.actions.enforceSysctls.enabled",
        "sometimes",
        "spec.actions.enforceSysctls.enabled",
        "expected a boolean",
    ),
    "expire-nodest-conn-five": (
        "spec.actions.enforceSysctls.expireNodestConn",
        5,
        "spec.actions.enforceSysctls.expireNodestConn",
        "expected a boolean",
    ),
    "expire-quiescent-a-list": (
        "spec.actions.enforceSysctls.expireQuiescentTemplate",
        [True],
        "spec.actions.enforceSysctls.expireQuiescentTemplate",
        "expected a boolean",
    ),
    "conntrack-enabled-a-list": (
        "spec.actions.flushStaleConntrack.enabled",
        ["yes"],
        "spec.actions.flushStaleConntrack.enabled",
        "expected a boolean",
    ),
    "raise-enabled-text": (
        "spec.actions.raiseConntrackMax.enabled",
        "whenever",
        "spec.actions.raiseConntrackMax.enabled",
        "expected a boolean",
    ),
    "raise-threshold-too-low": (
        "spec.actions.raiseConntrackMax.thresholdPercent",
        49,
        "spec.actions.raiseConntrackMax.thresholdPercent",
        "greater than or equal to 50",
    ),
    "raise-threshold-over-100": (
        "spec.actions.raiseConntrackMax.thresholdPercent",
        101,
        "spec.actions.raiseConntrackMax.thresholdPercent",
        "less than or equal to 100",
    ),
    "raise-step-zero": (
        "spec.actions.raiseConntrackMax.stepPercent",
        0,
        "spec.actions.raiseConntrackMax.stepPercent",
        "greater than or equal to 1",
    ),
    "raise-step-fraction": (
        "spec.actions.raiseConntrackMax.stepPercent",
        2.5,
        "spec.actions.raiseConntrackMax.stepPercent",
        "valid integer",
    ),
    "raise-ceiling-too-low": (
        "spec.actions.raiseConntrackMax.ceiling",
        1023,
        "spec.actions.raiseConntrackMax.ceiling",
        "greater than or equal to 1024",
    ),
    "raise-ceiling-too-high": (
        "spec.actions.raiseConntrackMax.ceiling",
        2**31,
        "spec.actions.raiseConntrackMax.ceiling",
        "less than or equal to 1073741824",
    ),
    "raise-ceiling-text": (
        "spec.actions.raiseConntrackMax.ceiling",
        "lots",
        "spec.actions.raiseConntrackMax.ceiling",
        "valid integer",
    ),
    "raise-without-ceiling": (
        "spec.actions.raiseConntrackMax",
        {"enabled": True},
        "spec.actions.raiseConntrackMax",
        "ceiling is required",
    ),
    "unknown-action": (
        "spec.actions.rebootNode",
        {"enabled": True},
        "spec.actions.rebootNode",
        "unknown field",
    ),
    # guardrails
    "dry-run-text": ("spec.guardrails.dryRun", "perhaps", "spec.guardrails.dryRun", "expected a boolean"),
    "paused-three": ("spec.guardrails.paused", 3, "spec.guardrails.paused", "expected a boolean"),
    "cooldown-negative": (
        "spec.guardrails.nodeCooldown",
        "-5m",
        "spec.guardrails.nodeCooldown",
        "is not a duration",
    ),
    "cooldown-over-a-day": (
        "spec.guardrails.nodeCooldown",
        "25h",
        "spec.guardrails.nodeCooldown",
        "between 0s and 24h",
    ),
    "cooldown-huge-text": (
        "spec.guardrails.nodeCooldown",
        HUGE_TEXT,
        "spec.guardrails.nodeCooldown",
        "is not a duration",
    ),
    "budget-not-an-object": (
        "spec.guardrails.hourlyBudget",
        6,
        "spec.guardrails.hourlyBudget",
        "valid dictionary",
    ),
    "budget-per-node-negative": (
        "spec.guardrails.hourlyBudget.perNode",
        -1,
        "spec.guardrails.hourlyBudget.perNode",
        "greater than or equal to 0",
    ),
    "budget-per-node-over-1000": (
        "spec.guardrails.hourlyBudget.perNode",
        1001,
        "spec.guardrails.hourlyBudget.perNode",
        "less than or equal to 1000",
    ),
    "budget-per-cluster-absurd": (
        "spec.guardrails.hourlyBudget.perCluster",
        10**18,
        "spec.guardrails.hourlyBudget.perCluster",
        "less than or equal to 100000",
    ),
    "budget-node-above-cluster": (
        "spec.guardrails.hourlyBudget",
        {"perNode": 10, "perCluster": 5},
        "spec.guardrails.hourlyBudget",
        "perNode (10) must not exceed perCluster (5)",
    ),
    "max-restarts-negative-percent": (
        "spec.guardrails.maxConcurrentKubeProxyRestarts",
        "-1%",
        "spec.guardrails.maxConcurrentKubeProxyRestarts",
        "percentage between 0% and 100%",
    ),
    "max-restarts-word": (
        "spec.guardrails.maxConcurrentKubeProxyRestarts",
        "ten",
        "spec.guardrails.maxConcurrentKubeProxyRestarts",
        "must be a count",
    ),
    "max-restarts-fraction": (
        "spec.guardrails.maxConcurrentKubeProxyRestarts",
        1.5,
        "spec.guardrails.maxConcurrentKubeProxyRestarts",
        "must be a count",
    ),
    "max-restarts-bool": (
        "spec.guardrails.maxConcurrentKubeProxyRestarts",
        True,
        "spec.guardrails.maxConcurrentKubeProxyRestarts",
        "must be a count",
    ),
    "anomaly-threshold-zero": (
        "spec.guardrails.anomalyThresholdPercent",
        0,
        "spec.guardrails.anomalyThresholdPercent",
        "greater than or equal to 1",
    ),
    "anomaly-threshold-percent-text": (
        "spec.guardrails.anomalyThresholdPercent",
        "30%",
        "spec.guardrails.anomalyThresholdPercent",
        "valid integer",
    ),
    "anomaly-min-nodes-zero": (
        "spec.guardrails.anomalyMinNodes",
        0,
        "spec.guardrails.anomalyMinNodes",
        "greater than or equal to 1",
    ),
    "anomaly-min-nodes-absurd": (
        "spec.guardrails.anomalyMinNodes",
        10**12,
        "spec.guardrails.anomalyMinNodes",
        "less than or equal to 100000",
    ),
    "min-observation-too-long": (
        "spec.guardrails.minObservation",
        "2h",
        "spec.guardrails.minObservation",
        "between 0s and 1h",
    ),
    "min-observation-fraction": (
        "spec.guardrails.minObservation",
        "1.5s",
        "spec.guardrails.minObservation",
        "is not a duration",
    ),
    "windows-too-many": (
        "spec.guardrails.maintenanceWindows",
        [WINDOW] * 10_000,
        "spec.guardrails.maintenanceWindows",
        "at most 16 items",
    ),
    "window-without-end": (
        "spec.guardrails.maintenanceWindows",
        [{"start": "02:00"}],
        "spec.guardrails.maintenanceWindows[0].end",
        "Field required",
    ),
    "window-unknown-day": (
        "spec.guardrails.maintenanceWindows",
        [{**WINDOW, "days": ["Someday"]}],
        "spec.guardrails.maintenanceWindows[0].days[0]",
        "Input should be",
    ),
    "window-no-days": (
        "spec.guardrails.maintenanceWindows",
        [{**WINDOW, "days": []}],
        "spec.guardrails.maintenanceWindows[0].days",
        "at least 1 item",
    ),
    "window-short-time": (
        "spec.guardrails.maintenanceWindows",
        [{"start": "7:00", "end": "08:00"}],
        "spec.guardrails.maintenanceWindows[0].start",
        "HH:MM",
    ),
    "window-unknown-zone": (
        "spec.guardrails.maintenanceWindows",
        [{**WINDOW, "timeZone": "Mars/Olympus_Mons"}],
        "spec.guardrails.maintenanceWindows[0].timeZone",
        "not a known IANA time zone",
    ),
    "window-zone-huge": (
        "spec.guardrails.maintenanceWindows",
        [{**WINDOW, "timeZone": HUGE_TEXT}],
        "spec.guardrails.maintenanceWindows[0].timeZone",
        "at most 64 characters",
    ),
    "unknown-guardrail": ("spec.guardrails.yolo", True, "spec.guardrails.yolo", "unknown field"),
    # the spec and the object
    "spec-a-string": ("spec", "everything", "spec", "valid dictionary"),
    "unknown-spec-field": ("spec.command", "rm -rf /", "spec.command", "unknown field"),
    "name-bad": ("metadata.name", "CoreDNS_Policy", "metadata.name", "not a valid name"),
    "name-huge": ("metadata.name", HUGE_TEXT, "metadata.name", "must be 1 to 253 characters"),
}

MODEL_ONLY: dict[str, str] = {
    "node-selector-unknown-field": "a structural schema prunes unknown fields instead of rejecting them",
    "unknown-action": "a structural schema prunes unknown fields instead of rejecting them",
    "unknown-guardrail": "a structural schema prunes unknown fields instead of rejecting them",
    "unknown-spec-field": "a structural schema prunes unknown fields instead of rejecting them",
    "window-unknown-zone": "no CEL function knows the IANA time-zone database",
    "name-bad": "object names are checked by the API server's own name validation, not the CRD schema",
    "name-huge": "object names are checked by the API server's own name validation, not the CRD schema",
}
"""Cases the generated CRD cannot express, and why (``proxymedic validate`` and the operator catch them)."""

MESSAGE_LIMIT = 600
"""No error line repeats a hostile value at length: each stays below this many characters."""
