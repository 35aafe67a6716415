"""The operator's Prometheus metrics. A registry per operator instance keeps tests independent."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass
class OperatorMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.decisions = Counter(
            "proxymedic_decisions_total",
            "Remediation decisions by action and result (issued, dry_run, held).",
            ["action", "result"],
            registry=self.registry,
        )
        self.holds = Counter(
            "proxymedic_holds_total",
            "Decisions held by a guardrail, by the rule that held them.",
            ["rule"],
            registry=self.registry,
        )
        self.intent_latency = Histogram(
            "proxymedic_intent_latency_seconds",
            "From the decision to the last targeted node's verified result.",
            ["action"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.intent_outcomes = Counter(
            "proxymedic_intent_node_outcomes_total",
            "Per-node results of intents, by outcome.",
            ["action", "outcome"],
            registry=self.registry,
        )
        self.open_intents = Gauge(
            "proxymedic_open_intents", "Intents still waiting for node results.", registry=self.registry
        )
        self.stale_nodes = Gauge(
            "proxymedic_stale_nodes", "Nodes whose kube-proxy looks stale now.", registry=self.registry
        )
        self.findings = Gauge(
            "proxymedic_findings", "Current drift findings by type.", ["type"], registry=self.registry
        )
        self.kube_proxy_restarts = Counter(
            "proxymedic_kube_proxy_restarts_total",
            "kube-proxy pods deleted for a restart.",
            registry=self.registry,
        )
        self.anomaly_breaker = Gauge(
            "proxymedic_anomaly_breaker_tripped",
            "1 while too many nodes look stale at once and restarts are held.",
            ["policy"],
            registry=self.registry,
        )
