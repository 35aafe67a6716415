"""Apply one RemediationIntent on this node through the dataplane adapters, and verify the result.

The agent only ever touches state that belongs to a backend the intent lists as dead, and
refuses any step that would touch one it lists as live. Applying an intent twice is harmless:
the second time finds nothing to do and reports AlreadyClean.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

from proxymedic.agent.liveness import InUse
from proxymedic.agent.node import NodeDataplane
from proxymedic.agent.rules import RULE_MODES
from proxymedic.api.health import IntentResult
from proxymedic.api.intent import FlushStep, IntentAction, IntentOutcome, RemediationIntent
from proxymedic.dataplane import sysctl as names
from proxymedic.dataplane.types import (
    DataplaneError,
    Endpoint,
    IPAddress,
    IPVSAbsentError,
    IPVSTimeouts,
    L4Protocol,
    ServiceKey,
)

FLUSH_VERIFY_SECONDS = 1.0
"""How long to wait for the kernel's queued flush (measured within 0.2 s on 6.1) before failing."""
FLUSH_POLL_SECONDS = 0.05
RULES_WAIT_SECONDS = 3.0
"""nftables and iptables mode: how long a flush waits for kube-proxy's rules to stop naming a dead
backend. A flush before that is undone by the next packet, which the old rules DNAT to the dead
backend again (kube-proxy syncs at most once a second by default, ``--min-sync-period``)."""
RULES_POLL_SECONDS = 0.1
NO_IPVS_NOTE = "IPVS steps not applicable: no IPVS on this node"
logger = logging.getLogger("proxymedic.agent")


@dataclass
class Work:
    """What a run did, or would do in dry-run, and what stopped it."""

    removed_real_servers: int = 0
    flushed_connections: int = 0
    deleted_conntrack_entries: int = 0
    changes: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What was deliberately left alone and why; it does not change the outcome."""

    def outcome(self, dry_run: bool) -> IntentOutcome:
        if self.errors:
            return IntentOutcome.FAILED
        if self.refusals and not self.changes:
            return IntentOutcome.REFUSED
        if not self.changes:
            return IntentOutcome.ALREADY_CLEAN
        return IntentOutcome.DRY_RUN if dry_run else IntentOutcome.APPLIED

    def message(self) -> str:
        parts = self.errors + self.refusals + self.changes + self.notes
        text = "; ".join(parts) if parts else "nothing to do"
        return text if len(text) <= 1024 else text[:1023] + "…"


_ip = functools.lru_cache(maxsize=4096)(ipaddress.ip_address)
"""Addresses are immutable: parse each of an intent's few addresses once, not once per intent."""


@dataclass(frozen=True)
class _Target:
    service: ServiceKey
    endpoint: Endpoint


def _service_keys(intent: RemediationIntent) -> list[tuple[ServiceKey, int]]:
    service = intent.spec.service
    if service is None:
        return []
    return [
        (ServiceKey(L4Protocol(str(port.protocol)), _ip(vip), port.port), port.target_port)
        for vip in service.cluster_ips
        for port in service.ports
    ]


async def _connection_counts(
    dp: NodeDataplane, services: Collection[ServiceKey]
) -> dict[tuple[ServiceKey, Endpoint], int]:
    """Counts of these virtual services only: the rest of the node's table is never decoded."""
    if dp.connections is None:
        return {}
    counts = await dp.run(partial(dp.connections.connection_counts, services))
    return {(c.service, c.destination): c.count for c in counts}


async def _flush_backends(
    intent: RemediationIntent, dp: NodeDataplane, work: Work, now: InUse | None
) -> None:
    spec = intent.spec
    steps = set(spec.steps)
    live = {_ip(ip) for ip in spec.live_backends}
    dead = [_ip(ip) for ip in spec.dead_backends]
    if live & set(dead):
        work.refusals.append("refused: the intent lists a backend as both dead and live")
        return
    if now is not None:
        protocols = {str(port.protocol) for port in spec.service.ports} if spec.service else set()
        in_use = set().union(*(now.kept(protocol) for protocol in protocols)) if protocols else set()
        kept = [backend for backend in dead if str(backend) in in_use]
        for backend in kept:
            why = "kube-proxy uses it" if str(backend) in now.programmed else "it is draining"
            work.notes.append(f"kept {backend}: {why} now (the intent was decided before)")
        live |= set(kept)
        dead = [backend for backend in dead if backend not in live]
        if not dead:
            return
    ipvs_steps = steps & {FlushStep.REMOVE_REAL_SERVERS, FlushStep.FLUSH_CONNECTIONS}
    if ipvs_steps and dp.ipvs is None:
        work.notes.append(NO_IPVS_NOTE)
    elif ipvs_steps:
        try:
            await _flush_ipvs(intent, dp, work, steps, dead, live)
        except IPVSAbsentError as exc:
            # iptables or nftables mode: the IPVS steps do not apply, the conntrack step does.
            work.notes.append(f"{NO_IPVS_NOTE} ({exc})")
        except DataplaneError as exc:
            work.errors.append(f"IPVS: {exc}")
    if FlushStep.DELETE_CONNTRACK in steps and dp.conntrack is not None:
        if not spec.dry_run:
            await _wait_for_rules(dp, intent, dead, work)
        for key, _ in _service_keys(intent):
            if key.protocol is not L4Protocol.UDP:
                continue
            for backend in dead:
                if backend.version != key.vip.version:
                    continue  # a dual-stack intent pairs each VIP with both families: no entry can match
                if spec.dry_run:
                    work.changes.append(f"would delete UDP conntrack entries to {key} from {backend}")
                    continue
                try:
                    deleted = await dp.run(
                        partial(dp.conntrack.delete_udp_entries, key.vip, key.port, backend)
                    )
                except DataplaneError as exc:
                    work.errors.append(f"conntrack: {exc}")
                    continue
                if deleted:
                    work.deleted_conntrack_entries += deleted
                    work.changes.append(f"deleted {deleted} conntrack entries to {key} from {backend}")


async def _wait_for_rules(
    dp: NodeDataplane, intent: RemediationIntent, dead: list[IPAddress], work: Work
) -> None:
    """In nftables and iptables mode, until kube-proxy's rules no longer DNAT the intent's addresses
    to a dead backend, for at most RULES_WAIT_SECONDS; the flush follows either way (deleting a dead
    backend's entries harms nothing), with a note when the rules still named it."""
    if dp.rules is None or dp.proxy_mode not in RULE_MODES:
        return
    keys = {(str(key.vip), key.port) for key, _ in _service_keys(intent) if key.protocol is L4Protocol.UDP}
    gone = {str(backend) for backend in dead}
    waited = 0.0
    while True:
        try:
            programmed = await dp.run(partial(dp.rules, dp.proxy_mode))
        except Exception as exc:  # unreadable rules: flush without waiting, and say so
            work.notes.append(f"kube-proxy's rules unreadable, flushed without waiting for them: {exc}"[:300])
            return
        still = sorted(
            {
                rs.address
                for vs in programmed.virtual_servers
                if vs.protocol == "UDP" and (vs.address, vs.port) in keys
                for rs in vs.real_servers
                if rs.address in gone
            }
        )
        if not still:
            return
        if waited >= RULES_WAIT_SECONDS:
            work.notes.append(
                f"kube-proxy's {dp.proxy_mode} rules still send traffic to {', '.join(still)} after "
                f"{RULES_WAIT_SECONDS:.0f} s: flushed anyway, new packets may be sent there again"
            )
            return
        await dp.pause(RULES_POLL_SECONDS)
        waited += RULES_POLL_SECONDS


async def _flush_ipvs(
    intent: RemediationIntent,
    dp: NodeDataplane,
    work: Work,
    steps: set[FlushStep],
    dead: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
    live: set[ipaddress.IPv4Address | ipaddress.IPv6Address],
) -> None:
    assert dp.ipvs is not None
    dry_run = intent.spec.dry_run
    # The intent's virtual services only: its cost does not grow with the node's IPVS table.
    keys = list(dict.fromkeys(key for key, _ in _service_keys(intent)))
    services = {vs.key: vs for vs in await dp.run(partial(dp.ipvs.get_services, keys))}
    counts = await _connection_counts(dp, keys)
    try:
        expire_nodest = await dp.run(partial(dp.sysctls.read, names.EXPIRE_NODEST_CONN))
    except DataplaneError:
        expire_nodest = None

    to_remove: list[_Target] = []
    to_flush: list[_Target] = []
    for key, target_port in _service_keys(intent):
        vs = services.get(key)
        if vs is None:
            continue
        present = {rs.endpoint for rs in vs.real_servers}
        for backend in dead:
            target = _Target(key, Endpoint(backend, target_port))
            conns = counts.get((key, target.endpoint), 0)
            if target.endpoint in present:
                if FlushStep.REMOVE_REAL_SERVERS in steps:
                    to_remove.append(target)
                elif conns:
                    work.refusals.append(
                        f"real server {target.endpoint} of {key} is still present and the policy does not "
                        "allow removing it"
                    )
            elif conns and FlushStep.FLUSH_CONNECTIONS in steps:
                to_flush.append(target)
    if any(t.endpoint.ip in live for t in to_remove + to_flush):  # defence in depth: never a live backend
        work.refusals.append("refused: a step would touch a live backend")
        return
    if (to_remove or to_flush) and expire_nodest != 1:
        state = "unknown" if expire_nodest is None else str(expire_nodest)
        work.errors.append(
            f"net.ipv4.vs.expire_nodest_conn is {state}: the kernel keeps connections to removed backends "
            "until their timeout; enable enforceSysctls or set it to 1"
        )
        to_flush = []  # D3 needs it; removing a stale real server still stops new flows to it

    before = sum(counts.get((t.service, t.endpoint), 0) for t in to_remove + to_flush)
    for target in to_remove:
        if dry_run:
            work.changes.append(f"would remove real server {target.endpoint} of {target.service}")
            continue
        if await dp.run(partial(dp.ipvs.remove_real_server, target.service, target.endpoint)):
            work.removed_real_servers += 1
            work.changes.append(f"removed real server {target.endpoint} of {target.service}")
    for target in to_flush:
        if dry_run:
            conns = counts.get((target.service, target.endpoint), 0)
            work.changes.append(f"would flush {conns} connections of {target.service} to {target.endpoint}")
            continue
        await dp.run(partial(dp.ipvs.flush_dead_real_server, target.service, target.endpoint))
        work.changes.append(f"flushed connections of {target.service} to {target.endpoint}")
    if dry_run:
        work.flushed_connections = before
        work.removed_real_servers = len(to_remove)
        return
    if expire_nodest == 1 and (to_remove or to_flush):
        remaining = await _wait_for_flush(dp, to_remove + to_flush)
        work.flushed_connections = max(0, before - remaining)
        if remaining:
            work.errors.append(f"{remaining} connection entries to dead backends remain after the flush")


async def _wait_for_flush(dp: NodeDataplane, targets: list[_Target]) -> int:
    """Poll the connection table until the kernel's queued flush has run; return what remains."""
    wanted = {(t.service, t.endpoint) for t in targets}
    services = {t.service for t in targets}
    waited = 0.0
    while True:
        counts = await _connection_counts(dp, services)
        remaining = sum(count for key, count in counts.items() if key in wanted)
        if not remaining or waited >= FLUSH_VERIFY_SECONDS:
            return remaining
        await dp.pause(FLUSH_POLL_SECONDS)
        waited += FLUSH_POLL_SECONDS


async def _set_udp_timeout(intent: RemediationIntent, dp: NodeDataplane, work: Work) -> None:
    value = intent.spec.parameters.udp_timeout_seconds
    if dp.ipvs is None:
        work.refusals.append("no IPVS on this node")
        return
    if value is None:
        return
    try:
        current = await dp.run(dp.ipvs.get_timeouts)
    except IPVSAbsentError:
        work.refusals.append("no IPVS on this node")
        return
    if current.udp == value:
        return
    if intent.spec.dry_run:
        work.changes.append(f"would set the IPVS UDP timeout from {current.udp}s to {value}s")
        return
    await dp.run(partial(dp.ipvs.set_timeouts, IPVSTimeouts(tcp=0, tcp_fin=0, udp=value)))  # 0: unchanged
    after = (await dp.run(dp.ipvs.get_timeouts)).udp
    if after != value:
        work.errors.append(f"IPVS UDP timeout reads {after}s after setting {value}s")
        return
    work.changes.append(
        f"set the IPVS UDP timeout from {current.udp}s to {value}s "
        "(new entries only: existing ones keep theirs)"
    )


async def _set_sysctls(values: dict[str, int], dp: NodeDataplane, work: Work, dry_run: bool) -> None:
    for name, value in sorted(values.items()):
        try:
            current = await dp.run(partial(dp.sysctls.read, name))
            if current == value:
                continue
            if dry_run:
                work.changes.append(f"would set {name} from {current} to {value}")
                continue
            await dp.run(partial(dp.sysctls.write, name, value))
            if await dp.run(partial(dp.sysctls.read, name)) != value:
                work.errors.append(f"{name} does not read back {value}")
                continue
            work.changes.append(f"set {name} from {current} to {value}")
        except DataplaneError as exc:
            work.errors.append(str(exc))


async def execute(intent: RemediationIntent, dp: NodeDataplane, in_use: InUse | None = None) -> IntentResult:
    """Run the intent on this node; every failure becomes a Failed result, never an exception.

    ``in_use``: the Service's backends in use now, read after the intent was decided; none of
    them is touched. None where the caller has no API to ask.
    """
    started = dp.clock()
    work = Work()
    spec = intent.spec
    try:
        match spec.action:
            case IntentAction.FLUSH_STALE_BACKENDS:
                await _flush_backends(intent, dp, work, in_use)
            case IntentAction.SET_IPVS_UDP_TIMEOUT:
                await _set_udp_timeout(intent, dp, work)
            case IntentAction.ENFORCE_SYSCTLS:
                await _set_sysctls(spec.parameters.sysctls or {}, dp, work, spec.dry_run)
            case IntentAction.RAISE_CONNTRACK_MAX:
                target = spec.parameters.conntrack_max or 0
                if await dp.run(partial(dp.sysctls.read, names.NF_CONNTRACK_MAX)) < target:
                    await _set_sysctls({names.NF_CONNTRACK_MAX: target}, dp, work, spec.dry_run)
    except DataplaneError as exc:
        work.errors.append(str(exc))
    except Exception as exc:  # a failed intent is a result to report, never a crash
        logger.warning("intent %s failed unexpectedly", intent.metadata.name, exc_info=exc)
        work.errors.append(f"{type(exc).__name__}: {exc}")
    finished = dp.clock()
    return IntentResult(
        intent=intent.metadata.name,
        intent_uid=intent.metadata.uid,
        outcome=work.outcome(spec.dry_run),
        completed_at=datetime.fromtimestamp(finished, UTC),
        duration_seconds=max(0.0, finished - started),
        removed_real_servers=work.removed_real_servers,
        flushed_connections=work.flushed_connections,
        deleted_conntrack_entries=work.deleted_conntrack_entries,
        message=work.message(),
    )
