"""Sense one node: kube-proxy, IPVS or its rules, conntrack and sysctls, into a NodeProxyHealth status.

In nftables and iptables mode the virtual servers come from kube-proxy's rules (``rules.py``),
in the shape IPVS mode reports them.

Whatever cannot be read is left out and named in ``problems``: the operator treats absence
as unknown, never as a reason to act.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

from proxymedic.agent import rules
from proxymedic.agent.node import NodeDataplane
from proxymedic.api.health import (
    MAX_FINDINGS,
    MAX_REAL_SERVERS,
    MAX_VIRTUAL_SERVERS,
    ConntrackState,
    Finding,
    FindingType,
    Freshness,
    Healthz,
    IPVSState,
    KubeProxyState,
    NodeProxyHealthStatus,
    OrphanedConnections,
    ProxyMode,
    RealServerState,
    VirtualServerState,
)
from proxymedic.api.policy import ServiceProtocol
from proxymedic.dataplane import kubeproxy
from proxymedic.dataplane import sysctl as names
from proxymedic.dataplane.types import (
    ConntrackAdapter,
    DataplaneError,
    Endpoint,
    L4Protocol,
    ServiceKey,
    VirtualService,
)

REPORTED_SYSCTLS = (
    names.EXPIRE_NODEST_CONN,
    names.EXPIRE_QUIESCENT_TEMPLATE,
    names.VS_CONNTRACK,
    names.NF_CONNTRACK_MAX,
    names.NF_CONNTRACK_UDP_TIMEOUT,
    names.NF_CONNTRACK_UDP_TIMEOUT_STREAM,
)
CONNTRACK_PRESSURE_PERCENT = 90
logger = logging.getLogger("proxymedic.agent")


@dataclass
class SenseSettings:
    stale_after_seconds: float = kubeproxy.DEFAULT_STALE_AFTER_SECONDS
    settle_seconds: float = kubeproxy.DEFAULT_SETTLE_SECONDS
    """How long queued work may wait for a sync before it counts as evidence of a stall."""
    conntrack_pressure_percent: int = CONNTRACK_PRESSURE_PERCENT
    virtual_servers: frozenset[ServiceKey] | None = None
    """The virtual servers to sense, looked up one by one; None: dump the node's whole table and keep
    its UDP ones. A scope makes a round's cost follow what is sensed, not the node's table."""


@dataclass
class LocalFindings:
    """First-seen times of node-local findings, kept across sensing rounds."""

    since: dict[str, datetime] = field(default_factory=dict)

    def keep(self, found: list[tuple[str, FindingType, str]], now: datetime) -> list[Finding]:
        current = {key for key, _, _ in found}
        for key in [key for key in self.since if key not in current]:
            del self.since[key]
        return [
            Finding(type=kind, message=message, since=self.since.setdefault(key, now))
            for key, kind, message in found
        ]


def _describe(exc: Exception) -> str:
    """A DataplaneError says what and why; anything else also names its type."""
    if isinstance(exc, DataplaneError):
        return str(exc)
    logger.warning("unexpected error while sensing", exc_info=exc)
    return f"{type(exc).__name__}: {exc}"


def _mode(observation: kubeproxy.KubeProxyObservation) -> ProxyMode:
    try:
        return ProxyMode(str(observation.mode)) if observation.mode is not None else ProxyMode.UNKNOWN
    except ValueError:
        return ProxyMode.UNKNOWN


def _timestamp(seconds: float | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None


def _counter(value: float | None) -> int | None:
    return int(value) if value is not None else None


def kube_proxy_state(observation: kubeproxy.KubeProxyObservation, settings: SenseSettings) -> KubeProxyState:
    verdict = kubeproxy.judge(
        observation, stale_after=settings.stale_after_seconds, settle=settings.settle_seconds
    )
    metrics = observation.metrics
    last_sync = last_queued = None
    if metrics is not None:
        syncs = [f.last_sync for f in metrics.families if f.last_sync is not None]
        queued = [f.last_queued for f in metrics.families if f.last_queued is not None]
        last_sync = min(syncs) if syncs else None  # the family furthest behind
        last_queued = max(queued) if queued else None
    healthz = Healthz.UNKNOWN
    if observation.healthz is not None:
        healthz = Healthz.HEALTHY if observation.healthz.healthy else Healthz.UNHEALTHY
    return KubeProxyState(
        freshness=Freshness(str(verdict.freshness)),
        reason=verdict.reason[:1024],
        last_sync_time=_timestamp(last_sync),
        last_queued_time=_timestamp(last_queued),
        healthz=healthz,
        endpoint_changes_total=_counter(metrics.endpoint_changes_total if metrics else None),
        service_changes_total=_counter(metrics.service_changes_total if metrics else None),
        started_at=_timestamp(metrics.process_start if metrics else None),
    )


def virtual_servers(
    services: list[VirtualService], connections: dict[tuple[ServiceKey, Endpoint], int]
) -> tuple[list[VirtualServerState], bool]:
    """The UDP virtual servers with their real servers, connection counts and orphaned connections."""
    per_service: dict[ServiceKey, dict[Endpoint, int]] = defaultdict(dict)
    for (service, destination), count in connections.items():
        per_service[service][destination] = count
    states: list[VirtualServerState] = []
    udp = sorted(
        (vs for vs in services if vs.key.protocol is L4Protocol.UDP), key=lambda vs: vs.key.sort_key()
    )
    for vs in udp[:MAX_VIRTUAL_SERVERS]:
        counts = per_service.get(vs.key, {})
        present = {rs.endpoint for rs in vs.real_servers}
        real = [
            RealServerState(
                ip=str(rs.endpoint.ip),
                port=rs.endpoint.port,
                weight=rs.weight,
                connections=counts.get(rs.endpoint, 0),
            )
            for rs in sorted(vs.real_servers, key=lambda rs: rs.endpoint.sort_key())
        ][:MAX_REAL_SERVERS]
        orphaned = [
            OrphanedConnections(ip=str(dest.ip), port=dest.port, connections=count)
            for dest, count in sorted(counts.items(), key=lambda item: item[0].sort_key())
            if dest not in present and count > 0
        ][:MAX_REAL_SERVERS]
        states.append(
            VirtualServerState(
                vip=str(vs.key.vip),
                port=vs.key.port,
                protocol=ServiceProtocol.UDP,
                real_servers=real,
                orphaned_connections=orphaned,
            )
        )
    return states, len(udp) > MAX_VIRTUAL_SERVERS


def _local_findings(
    mode: ProxyMode, sysctls: dict[str, int], conntrack: ConntrackState | None, settings: SenseSettings
) -> list[tuple[str, FindingType, str]]:
    found: list[tuple[str, FindingType, str]] = []
    if mode is ProxyMode.IPVS:
        for name in (names.EXPIRE_NODEST_CONN, names.EXPIRE_QUIESCENT_TEMPLATE):
            if sysctls.get(name) == 0:
                found.append(
                    (
                        f"sysctl:{name}",
                        FindingType.SYSCTL_DRIFT,
                        f"{name} is 0: connections to removed backends live until their timeout",
                    )
                )
    if conntrack is not None and conntrack.max > 0:
        percent = 100 * conntrack.count / conntrack.max
        if percent >= settings.conntrack_pressure_percent:
            found.append(
                (
                    "conntrack",
                    FindingType.CONNTRACK_PRESSURE,
                    f"conntrack table {percent:.0f}% full ({conntrack.count} of {conntrack.max})",
                )
            )
    return found


def _reply_sources(
    conntrack: ConntrackAdapter, keys: list[ServiceKey]
) -> dict[tuple[ServiceKey, Endpoint], int]:
    """Conntrack entries by (address, the endpoint that answers them): the connection counts of a
    node whose kube-proxy has no IPVS table."""
    return {
        (key, endpoint): count
        for key in keys
        for endpoint, count in conntrack.reply_sources(key.vip, key.port).items()
    }


async def sense(
    dataplane: NodeDataplane, settings: SenseSettings, local: LocalFindings, agent_version: str
) -> NodeProxyHealthStatus:
    """One round of sensing; never raises on what the node returns (it goes into ``problems``)."""
    problems: list[str] = []
    observation = await dataplane.probe()
    mode = _mode(observation)
    dataplane.proxy_mode = mode

    ipvs_state: IPVSState | None = None
    states: list[VirtualServerState] = []
    truncated = False
    if dataplane.ipvs is not None and mode in (ProxyMode.IPVS, ProxyMode.UNKNOWN):
        try:
            timeouts = await dataplane.run(dataplane.ipvs.get_timeouts)
            ipvs_state = IPVSState(
                tcp_timeout_seconds=timeouts.tcp,
                tcp_fin_timeout_seconds=timeouts.tcp_fin,
                udp_timeout_seconds=timeouts.udp,
            )
            scope = settings.virtual_servers
            if scope is None:
                services = await dataplane.run(dataplane.ipvs.list_services)
            else:
                services = await dataplane.run(
                    partial(dataplane.ipvs.get_services, sorted(scope, key=ServiceKey.sort_key))
                )
            counts: dict[tuple[ServiceKey, Endpoint], int] = {}
            if dataplane.connections is not None:
                counts = {
                    (c.service, c.destination): c.count
                    for c in await dataplane.run(partial(dataplane.connections.connection_counts, scope))
                }
            states, truncated = virtual_servers(services, counts)
        except Exception as exc:  # whatever the kernel or a library does, report and go on
            problems.append(f"IPVS: {_describe(exc)}"[:512])
    elif dataplane.rules is not None and mode in rules.RULE_MODES:
        try:
            programmed = await dataplane.run(partial(dataplane.rules, mode))
        except Exception as exc:
            problems.append(f"kube-proxy's {mode} rules: {_describe(exc)}"[:512])
        else:
            selected = rules.selected_udp(programmed, settings.virtual_servers)
            keys = selected[:MAX_VIRTUAL_SERVERS]
            answered: dict[tuple[ServiceKey, Endpoint], int] = {}
            if dataplane.conntrack is not None:
                try:
                    answered = await dataplane.run(partial(_reply_sources, dataplane.conntrack, keys))
                except Exception as exc:  # the rules are still worth reporting
                    problems.append(f"conntrack entries by endpoint: {_describe(exc)}"[:512])
            states, _ = virtual_servers(rules.virtual_services(programmed, keys), answered)
            truncated = len(selected) > MAX_VIRTUAL_SERVERS

    sysctls: dict[str, int] = {}
    for name in REPORTED_SYSCTLS:
        try:
            sysctls[name] = await dataplane.run(partial(dataplane.sysctls.read, name))
        except DataplaneError:
            continue  # absent module or file: the value is unknown, not a problem of the agent
        except Exception as exc:
            problems.append(f"sysctl {name}: {_describe(exc)}"[:512])

    try:
        writable = dataplane.sysctls_writable()
    except Exception as exc:  # unknown, not a reason to stop sensing
        problems.append(f"sysctl write access: {_describe(exc)}"[:512])
        writable = None

    conntrack: ConntrackState | None = None
    if dataplane.conntrack is not None:
        try:
            stats = await dataplane.run(dataplane.conntrack.stats)
            conntrack = ConntrackState(count=stats.count, max=stats.max, drops=stats.drops)
        except Exception as exc:
            problems.append(f"conntrack: {_describe(exc)}"[:512])

    now = datetime.fromtimestamp(dataplane.clock(), UTC)
    findings = local.keep(_local_findings(mode, sysctls, conntrack, settings), now)[:MAX_FINDINGS]
    return NodeProxyHealthStatus(
        observed_at=now,
        agent_version=agent_version,
        kernel_version=dataplane.kernel_version[:128],
        proxy_mode=mode,
        kube_proxy=kube_proxy_state(observation, settings),
        ipvs=ipvs_state,
        sysctls=sysctls,
        sysctls_writable=writable,
        conntrack=conntrack,
        virtual_servers=states,
        virtual_servers_truncated=truncated,
        findings=findings,
        finding_count=len(findings),
        problems=problems[:16],
    )
