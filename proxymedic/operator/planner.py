"""From observations to decisions: which policy covers a Service, and the intent a change calls for.

Pure functions: the handlers feed them what the watches saw and write what they return.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from proxymedic.api.intent import FlushStep, IntentAction, RemediationIntentSpec, ServicePort, ServiceTarget
from proxymedic.api.meta import LabelSelector
from proxymedic.api.policy import ProxyHealthPolicy, ServiceProtocol
from proxymedic.operator.backends import ServiceInfo, resolve_target_port

DEFAULT_INTENT_TTL = timedelta(minutes=10)


def policy_covers(policy: ProxyHealthPolicy, service: ServiceInfo) -> bool:
    selection = policy.spec.services
    if selection.namespaces and service.ref.namespace not in selection.namespaces:
        return False
    if not selection.label_selector.matches(service.labels):
        return False
    return bool(service.protocols() & {str(protocol) for protocol in selection.protocols})


def covering_policy(policies: Iterable[ProxyHealthPolicy], service: ServiceInfo) -> ProxyHealthPolicy | None:
    """The policy that governs a Service: the first by name among those that cover it.

    One policy per Service keeps decisions unambiguous; more than one covering policy is
    reported on the policies' status as a conflict.
    """
    matching = sorted((p for p in policies if policy_covers(p, service)), key=lambda p: p.metadata.name)
    return matching[0] if matching else None


def flush_steps(policy: ProxyHealthPolicy, *, remove_real_servers: bool) -> list[FlushStep]:
    """The flush steps a policy allows, in the order the agent runs them."""
    actions = policy.spec.actions
    steps: list[FlushStep] = []
    if remove_real_servers and (
        actions.flush_stale_connections.enabled or actions.remove_stale_real_servers.enabled
    ):
        steps.append(FlushStep.REMOVE_REAL_SERVERS)
    if actions.flush_stale_connections.enabled:
        steps.append(FlushStep.FLUSH_CONNECTIONS)
    if actions.flush_stale_conntrack.enabled:
        steps.append(FlushStep.DELETE_CONNTRACK)
    return steps


def service_target(
    service: ServiceInfo, endpoint_ports: dict[str, int], protocols: set[str]
) -> ServiceTarget | None:
    """The Service's VIPs and the ports of the covered protocols with their real server ports."""
    ports = []
    for port in service.ports:
        if port.protocol not in protocols:
            continue
        target = resolve_target_port(port, endpoint_ports)
        if target is None:
            continue
        ports.append(
            ServicePort(
                name=port.name or None,
                protocol=ServiceProtocol(port.protocol),
                port=port.port,
                target_port=target,
            )
        )
    if not ports:
        return None
    return ServiceTarget(
        namespace=service.ref.namespace,
        name=service.ref.name,
        cluster_ips=list(service.cluster_ips),
        ports=ports,
    )


@dataclass(frozen=True)
class IntentDraft:
    name: str
    spec: RemediationIntentSpec


def intent_name(prefix: str, *parts: str) -> str:
    """A readable, unique, DNS-safe name: the prefix and a digest of what makes the decision unique."""
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:10]
    return f"{prefix[:40].rstrip('-.')}-{digest}"


def plan_backend_flush(
    policy: ProxyHealthPolicy,
    service: ServiceInfo,
    endpoint_ports: dict[str, int],
    dead: frozenset[str],
    live: frozenset[str],
    now: datetime,
    *,
    node_names: list[str] | None = None,
    remove_real_servers: bool = True,
    reason: str = "",
    ttl: timedelta = DEFAULT_INTENT_TTL,
) -> IntentDraft | None:
    """The intent for backends that left a Service, or None when the policy allows no step.

    ``node_names`` addresses specific nodes (a drift repair); otherwise every node the policy
    selects (a Service change).
    """
    steps = flush_steps(policy, remove_real_servers=remove_real_servers)
    protocols = {str(p) for p in policy.spec.services.protocols}
    target = service_target(service, endpoint_ports, protocols)
    if not steps or target is None or not dead:
        return None
    dead_list, live_list = sorted(dead - live), sorted(live)
    if not dead_list:
        return None
    selector = policy.spec.nodes.label_selector
    spec = RemediationIntentSpec(
        policy_name=policy.metadata.name,
        action=IntentAction.FLUSH_STALE_BACKENDS,
        reason=reason or f"{', '.join(dead_list)} left {service.ref}",
        service=target,
        dead_backends=dead_list,
        live_backends=live_list,
        steps=steps,
        all_nodes=not node_names,
        node_selector=None if node_names or selector == LabelSelector() else selector,
        node_names=sorted(node_names or []),
        dry_run=policy.spec.guardrails.dry_run,
        decided_at=now,
        expires_at=now + ttl,
    )
    name = intent_name(
        f"{service.ref.name}-flush",
        service.uid,
        ",".join(dead_list),
        ",".join(spec.node_names),
        now.isoformat(),
    )
    return IntentDraft(name=name, spec=spec)
