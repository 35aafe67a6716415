"""What the runbook reads from the API server, and the parsed view the reports are built from (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from proxymedic.api.errors import describe_errors
from proxymedic.api.health import NodeProxyHealth, NodeProxyHealthStatus
from proxymedic.api.intent import RemediationIntent
from proxymedic.api.policy import ProxyHealthPolicy, ProxyHealthPolicyStatus
from proxymedic.operator.state import Cluster

JsonObject = dict[str, Any]
OPERATOR_COMPONENT = "proxymedic-operator"


@dataclass
class Snapshot:
    """The objects as the API server returned them."""

    policies: list[JsonObject] = field(default_factory=list)
    healths: list[JsonObject] = field(default_factory=list)
    intents: list[JsonObject] = field(default_factory=list)
    nodes: list[JsonObject] = field(default_factory=list)
    events: list[JsonObject] = field(default_factory=list)
    services: list[JsonObject] = field(default_factory=list)
    slices: list[JsonObject] = field(default_factory=list)


@dataclass(frozen=True)
class EventRecord:
    """A ProxyMedic Event, as ``kubectl get events`` shows it."""

    namespace: str
    reason: str
    type: str
    kind: str
    name: str
    message: str
    count: int
    first: datetime | None
    last: datetime | None

    @property
    def object(self) -> str:
        return f"{self.kind.lower()}/{self.name}"


@dataclass(frozen=True)
class PolicyRecord:
    name: str
    policy: ProxyHealthPolicy | None
    errors: tuple[str, ...]
    raw_status: Mapping[str, Any]
    status: ProxyHealthPolicyStatus | None
    """What the operator wrote; None before it did, or when it cannot be read."""


@dataclass
class View:
    """The snapshot parsed; ``cluster`` is the operator's own in-memory picture, fed the same objects."""

    cluster: Cluster
    policies: list[PolicyRecord]
    healths: dict[str, NodeProxyHealthStatus]
    invalid_reports: dict[str, str]
    """Node → why its NodeProxyHealth could not be read."""
    nodes: dict[str, Mapping[str, str]]
    """Nodes that exist → their labels."""
    intents: list[RemediationIntent]
    events: list[EventRecord]
    raw_events: list[JsonObject] = field(default_factory=list)
    """The operator's Events as the API returned them: the restart record is read from these."""


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _event(obj: Mapping[str, Any]) -> EventRecord:
    involved = obj.get("involvedObject") or {}
    meta = obj.get("metadata") or {}
    last = parse_time(obj.get("lastTimestamp")) or parse_time(obj.get("eventTime"))
    return EventRecord(
        namespace=str(meta.get("namespace", "")),
        reason=str(obj.get("reason", "")),
        type=str(obj.get("type", "")),
        kind=str(involved.get("kind", "")),
        name=str(involved.get("name", "")),
        message=str(obj.get("message", "")),
        count=int(obj.get("count") or 1),
        first=parse_time(obj.get("firstTimestamp")) or last,
        last=last,
    )


def is_operator_event(obj: Mapping[str, Any]) -> bool:
    source = obj.get("source") or {}
    return OPERATOR_COMPONENT in (obj.get("reportingComponent"), source.get("component"))


def build_view(snapshot: Snapshot) -> View:
    cluster = Cluster()
    policies: list[PolicyRecord] = []
    for raw in sorted(snapshot.policies, key=lambda p: str(p.get("metadata", {}).get("name", ""))):
        name = str(raw.get("metadata", {}).get("name", ""))
        entry = cluster.set_policy(name, raw)
        errors: tuple[str, ...] = tuple(entry.errors) if entry is not None else ()
        raw_status = dict(raw.get("status") or {})
        try:
            status = ProxyHealthPolicyStatus.model_validate(raw_status) if raw_status else None
        except ValidationError:
            status = None
        policies.append(PolicyRecord(name, entry.policy if entry else None, errors, raw_status, status))
    for raw in snapshot.services:
        cluster.set_service(raw, deleted=False)
    for raw in snapshot.slices:
        cluster.set_slice(raw, deleted=False)
    for raw in snapshot.nodes:
        cluster.set_node(raw, deleted=False)
    invalid: dict[str, str] = {}
    for raw in snapshot.healths:
        name = str(raw.get("metadata", {}).get("name", ""))
        try:
            health = NodeProxyHealth.model_validate(raw)
        except ValidationError as exc:
            invalid[name] = "; ".join(describe_errors(exc, NodeProxyHealth)[:3])
            continue
        if health.status is None:
            invalid[name] = "the agent has not written a status yet"
            continue
        cluster.healths[name] = health.status
    intents: list[RemediationIntent] = []
    for raw in snapshot.intents:
        try:
            intents.append(RemediationIntent.model_validate(raw))
        except ValidationError:
            continue
    raw_events = [raw for raw in snapshot.events if is_operator_event(raw)]
    events = [_event(raw) for raw in raw_events]
    events.sort(key=lambda e: (e.last or datetime.min.replace(tzinfo=UTC), e.reason, e.name), reverse=True)
    return View(
        cluster=cluster,
        policies=policies,
        healths=dict(cluster.healths),
        invalid_reports=invalid,
        nodes=dict(cluster.nodes),
        intents=intents,
        events=events,
        raw_events=raw_events,
    )
