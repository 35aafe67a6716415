"""The reports the commands print: plain data, dumped as camelCase JSON or YAML for scripts."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Report(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")

    def dump(self) -> dict[str, Any]:
        """JSON-ready, camelCase, timestamps as RFC 3339 strings."""
        return self.model_dump(mode="json", by_alias=True)


class Table(Report):
    columns: list[str]
    rows: list[list[str]]


# --- status --------------------------------------------------------------------------------


class PolicyRow(Report):
    name: str
    state: str
    """Active, Active (dry-run), Observing, Paused, Degraded, Invalid or Pending (not seen by an operator)."""
    detail: str = ""
    selected_services: int | None = None
    selected_nodes: int | None = None
    intents_issued: int = 0
    actions_applied: int = 0
    actions_held: int = 0
    kube_proxy_restarts: int = 0
    last_remediation_time: datetime | None = None
    last_remediation: str = ""


class NodeRow(Report):
    name: str
    health: str
    reason: str = ""
    proxy_mode: str = ""
    sync: str = ""
    healthz: str = ""
    findings: list[str] = Field(default_factory=list)
    conntrack_percent: float | None = None
    observed_at: datetime | None = None


class IntentRow(Report):
    name: str
    action: str
    target: str
    dry_run: bool
    decided_at: datetime
    target_nodes: int | None = None
    reported_nodes: int | None = None


class EventRow(Report):
    namespace: str
    last_seen: datetime | None
    type: str
    reason: str
    object: str
    count: int
    message: str


class StatusReport(Report):
    generated_at: datetime
    policies: list[PolicyRow]
    nodes: list[NodeRow]
    node_counts: dict[str, int]
    open_intents: list[IntentRow]
    events: list[EventRow]
    """Recent remediations and holds, newest first."""


# --- diagnose ------------------------------------------------------------------------------


class Verdict(enum.StrEnum):
    OK = "ok"
    PROBLEM = "problem"
    UNKNOWN = "unknown"
    INFO = "info"
    NOT_APPLICABLE = "n/a"


class Scope(enum.StrEnum):
    HEALTHY = "healthy"
    NODE_LOCAL = "node-local"
    CLUSTER_WIDE = "cluster-wide"
    UNKNOWN = "unknown"


class StepReport(Report):
    number: int
    key: str
    title: str
    manual: list[str]
    """The commands of the manual runbook this step answers."""
    verdict: Verdict
    summary: str
    details: list[str] = Field(default_factory=list)
    table: Table | None = None
    facts: dict[str, Any] = Field(default_factory=dict)


class Diagnosis(Report):
    generated_at: datetime
    node: str
    observed_at: datetime
    agent_version: str
    kernel_version: str
    health: str
    verdict: Verdict
    scope: Scope
    summary: list[str]
    steps: list[StepReport]
