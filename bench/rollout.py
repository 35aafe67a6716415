"""One CoreDNS rollout on a simulated cluster: repair latency, DNS failures and API writes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from bench.footprint import cpu_seconds
from bench.measured import NEW_BACKENDS, Measured, Scenario, count_by, percentile
from proxymedic.sim.kubeproxy import Stall
from proxymedic.sim.traffic import ClientStats
from proxymedic.sim.world import DNS_VIP, SimNode

STATUS_WRITE = "PATCH nodeproxyhealths/status"


@dataclass
class Timing:
    warm_up: float = 3.0
    """Traffic before the rollout (every client has its IPVS entry)."""
    steady: float = 0.0
    """A steady-state window measured before the rollout (writes per second)."""
    surge_wait: float = 1.0
    lameduck: float = 2.0
    settle: float = 10.0


async def operator_quiet(pid: int | None, below: float = 20.0, within: float = 120.0) -> float:
    """Seconds until the operator process ``pid`` used less than ``below`` % of a core over one
    second (0 where the operator has no process of its own)."""
    if pid is None:
        return 0.0
    started = time.monotonic()
    while time.monotonic() - started < within:
        before, at = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(1.0)
        if 100 * (cpu_seconds(pid) - before) / (time.monotonic() - at) < below:
            break
    return time.monotonic() - started


def latency_summary(
    latencies: dict[str, list[float]], delivered: dict[str, float], durations: list[float]
) -> dict[str, Any]:
    """The repair latencies per dead backend, their percentiles over all nodes, when each intent
    was seen, and how long the agents took to execute."""
    every = [v for values in latencies.values() for v in values]
    return {
        "per_backend": {ip: sorted(v) for ip, v in latencies.items()},
        "count": len(every),
        "p50": percentile(every, 50),
        "p99": percentile(every, 99),
        "max": max(every, default=float("nan")),
        "intent_seen_after": delivered,
        "execute_p50": percentile(durations, 50),
        "execute_max": max(durations, default=float("nan")),
    }


def merge_stats(stats: list[ClientStats]) -> dict[str, Any]:
    sent = sum(s.sent for s in stats)
    failed = sum(s.failed for s in stats)
    return {
        "clients": len(stats),
        "sent": sent,
        "failed": failed,
        "longest_failure": max((s.longest_failure for s in stats), default=0.0),
        "max_failed_per_client": max((s.failed for s in stats), default=0),
        "failing_at_end": sum(1 for s in stats if s.failing_at_end),
    }


def failure_bound(node: SimNode) -> float | None:
    """For the node's clients still failing at the end: seconds from their first failure until the
    failure would end without ProxyMedic. None when nothing bounds it (a stalled kube-proxy keeps a
    dead real server, and each forwarded packet restarts the entry's 300 s timer)."""
    worst = 0.0
    for client in node.clients:
        if not client.stats.failing_at_end or client.stats.first_failure_at is None:
            continue
        entry = node.model.connection(client.address, client.vip, client.port)
        if entry is None:
            continue
        if entry.destination.ip in node.model.alive:
            continue
        available = any(
            rs.endpoint == entry.destination
            for vs in node.model.list_services()
            if vs.key == entry.service
            for rs in vs.real_servers
        )
        if available and node.kube_proxy.stall is not Stall.NONE:
            return None  # forwarded to the dead pod: the timer restarts with every query
        worst = max(worst, entry.expires_at - client.stats.first_failure_at)
    return worst


async def run(
    scenario: Scenario, timing: Timing, label: str = "", production_heartbeat: float | None = None
) -> dict[str, Any]:
    """Build the cluster, wait until the operator and every agent are up, roll CoreDNS out."""
    t_build = time.monotonic()
    settings = scenario.settings
    async with Measured(scenario) as cluster:
        world = cluster.world
        ready_after = await cluster.wait_ready()
        world.traffic = True
        await asyncio.sleep(timing.warm_up)
        steady: dict[str, Any] = {}
        if timing.steady > 0:
            start = time.time()
            await asyncio.sleep(timing.steady)
            writes = cluster.writes_between(start, time.time())
            steady = {"seconds": timing.steady, "writes": len(writes), "by_kind": count_by(writes)}
        if production_heartbeat is not None:
            # The rollout runs with the production heartbeat: a shortened one would load the operator
            # with reports that a real cluster does not send.
            for runner in world.agents.values():
                runner.agent.settings.heartbeat = production_heartbeat
        # The rollout starts on a quiet control plane: the reports of a shortened heartbeat (or of
        # thousands of agents starting) still queued at the operator are not a rollout's cost.
        quiet_after = await operator_quiet(world.operator_pid())
        cluster.stall()
        started = time.time()
        series_from = started - timing.steady
        await world.rollout(NEW_BACKENDS, lameduck=timing.lameduck, surge_wait=timing.surge_wait)
        await asyncio.sleep(timing.settle)
        world.traffic = False
        ended = time.time()
        rollout_writes = cluster.writes_between(started, ended)
        kinds: dict[str, dict[str, Any]] = {}
        bounds: dict[str, float | None] = {}
        for node in world.nodes.values():
            kind = node.spec.note
            for client in node.clients:
                client.stats.close(ended)
            kinds.setdefault(kind, {"nodes": 0, "stats": []})
            kinds[kind]["nodes"] += 1
            kinds[kind]["stats"].extend(c.stats for c in node.clients)
            if any(c.stats.failing_at_end for c in node.clients):
                bound = failure_bound(node)
                prev = bounds.get(kind, 0.0)
                bounds[kind] = None if bound is None or prev is None else max(prev, bound)
        latencies = cluster.repair_latencies()
        durations = [r.duration_seconds for results in world.results.values() for r in results]
        delivered = {
            ip: cluster.intents[name][0] - world.out_of_use_at[ip]
            for name, (_, dead) in cluster.intents.items()
            for ip in dead
            if ip in world.out_of_use_at
        }
        bins: dict[int, int] = {}
        for write in cluster.writes_between(series_from, ended):
            second = int(write[0] - started)
            bins[second] = bins.get(second, 0) + 1
        series = [(t, bins.get(t, 0)) for t in range(int(series_from - started), int(ended - started) + 1)]
        restarts = sum(node.kube_proxy.restarts for node in world.nodes.values())
        restarts_by_kind: dict[str, int] = {}
        for node in world.nodes.values():
            kind = node.spec.note
            restarts_by_kind[kind] = restarts_by_kind.get(kind, 0) + node.kube_proxy.restarts
        ticks = sorted(world.tick_seconds)
        result: dict[str, Any] = {
            "label": label,
            "nodes": len(world.nodes),
            "with_proxymedic": settings.with_proxymedic,
            "lameduck": timing.lameduck,
            "query_interval": settings.query_interval,
            "clients_per_node": settings.clients_per_node,
            "ready_after": ready_after,
            "quiet_after": quiet_after,
            "rollout_seconds": ended - started,
            "run_seconds": time.monotonic() - t_build,
            "dns": {
                kind: {"nodes": data["nodes"], **merge_stats(data["stats"]), "bound": bounds.get(kind, 0.0)}
                for kind, data in kinds.items()
            },
            "latency": latency_summary(latencies, delivered, durations),
            "steady_writes": steady,
            "rollout_writes": {
                "seconds": ended - started,
                "writes": len(rollout_writes),
                "by_kind": count_by(rollout_writes),
            },
            "kube_proxy_restarts": restarts,
            "kube_proxy_restarts_by_kind": restarts_by_kind,
            "write_series": series,
            "tick_p50": percentile(ticks, 50),
            "vip": DNS_VIP,
        }
        return result
