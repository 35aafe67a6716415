"""The restart record: what the operator writes when it restarts a kube-proxy, and how it is read back.

Cooldowns and hourly budgets count the disruptive actions of the last hour. The operator keeps
that history in memory, so a restarted (or newly elected) operator would start with none and
could restart a node's kube-proxy again at once. Every restart it makes is announced by a
``KubeProxyRestarted`` Event whose annotations name the policy and the node; reading those
back restores the history. Events are the record users already read, so nothing else needs
persisting. ``proxymedic diagnose`` reads the same record with the same function, so it counts
exactly the restarts the operator counts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from proxymedic.api import reasons
from proxymedic.operator.guardrails import HOUR, ActionKind, ActionRecord

RESTARTED_REASON = reasons.KUBE_PROXY_RESTARTED
POLICY_ANNOTATION = "proxymedic.io/policy"
NODE_ANNOTATION = "proxymedic.io/node"
_LEGACY_POLICY = re.compile(r"\[policy ([^\]]+)\]\s*$")
"""Events posted before the annotations existed name the policy at the end of their message."""


def restart_record(policy: str, node: str) -> dict[str, str]:
    """The annotations of a ``KubeProxyRestarted`` Event: the record ``restart_history`` reads."""
    return {POLICY_ANNOTATION: policy, NODE_ANNOTATION: node}


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _policy_and_node(event: Mapping[str, Any]) -> tuple[str, str] | None:
    annotations = (event.get("metadata") or {}).get("annotations") or {}
    policy = annotations.get(POLICY_ANNOTATION)
    node = annotations.get(NODE_ANNOTATION) or (event.get("involvedObject") or {}).get("name")
    if not isinstance(policy, str):
        match = _LEGACY_POLICY.search(str(event.get("message") or ""))
        policy = match[1] if match else None
    if not policy or not isinstance(node, str) or not node:
        return None
    return policy, node


def restart_history(
    events: Iterable[Mapping[str, Any]], component: str, now: datetime
) -> dict[str, list[ActionRecord]]:
    """Policy name → the kube-proxy restarts of the last hour that this operator's Events record.

    An Event repeated within ten minutes carries a count instead of a new object: its first
    repeat is dated at ``firstTimestamp`` and the others at ``lastTimestamp``, the later
    (stricter) reading of when they happened. Events of other components, other reasons,
    unreadable times or without a policy are ignored: they are no evidence of a restart.
    """
    history: dict[str, list[ActionRecord]] = {}
    for event in events:
        if event.get("reason") != RESTARTED_REASON:
            continue
        source = event.get("source") or {}
        if component not in (event.get("reportingComponent"), source.get("component")):
            continue
        attribution = _policy_and_node(event)
        first = _parse_time(event.get("firstTimestamp") or event.get("eventTime"))
        last = _parse_time(event.get("lastTimestamp")) or first
        count = event.get("count")
        count = count if isinstance(count, int) and count > 0 else 1
        if attribution is None or first is None or last is None:
            continue
        policy, node = attribution
        for index in range(min(count, 100)):  # more than a node's hourly budget ever allows
            at = first if index == 0 else last
            if now - at < HOUR:
                history.setdefault(policy, []).append(ActionRecord(ActionKind.RESTART_KUBE_PROXY, at, node))
    return history
