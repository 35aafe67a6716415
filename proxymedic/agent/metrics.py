"""The agent's Prometheus metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class AgentMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.intents = Counter(
            "proxymedic_agent_intents_total",
            "Intents applied on this node, by action and outcome.",
            ["action", "outcome"],
            registry=self.registry,
        )
        self.intent_seconds = Histogram(
            "proxymedic_agent_intent_seconds",
            "Time to apply and verify one intent on this node.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.status_writes = Counter(
            "proxymedic_agent_status_writes_total", "NodeProxyHealth status writes.", registry=self.registry
        )
        self.api_errors = Counter(
            "proxymedic_agent_api_errors_total", "Failed calls to the API server.", registry=self.registry
        )
        self.findings = Gauge(
            "proxymedic_agent_findings", "Node-local findings now, by type.", ["type"], registry=self.registry
        )
        self.kube_proxy_fresh = Gauge(
            "proxymedic_agent_kube_proxy_freshness",
            "kube-proxy sync verdict: 1 for the current one of Fresh, Stale and Unknown.",
            ["freshness"],
            registry=self.registry,
        )
        self.last_report = Gauge(
            "proxymedic_agent_last_report_timestamp_seconds",
            "When the agent last wrote its status.",
            registry=self.registry,
        )
