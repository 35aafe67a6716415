"""``proxymedic demo``: a CoreDNS rollout on a small simulated cluster, without and with ProxyMedic.

The operator and the agents are ProxyMedic's own, talking over HTTP to the in-process API
emulator; each node's kernel is the modelled dataplane and kube-proxy is simulated.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml

from proxymedic.runbook.ages import age
from proxymedic.runbook.snapshot import parse_time
from proxymedic.sim.coredns import POLICY
from proxymedic.sim.kubeproxy import Stall
from proxymedic.sim.traffic import ClientStats
from proxymedic.sim.waiting import until
from proxymedic.sim.world import DNS_NAMESPACE, DNS_SERVICE, DNS_VIP, NodeSpec, World, WorldSettings

NODES = [
    NodeSpec("node-1", note="healthy"),
    NodeSpec("node-2", expire_nodest_conn=0, note="net.ipv4.vs.expire_nodest_conn=0"),
    NodeSpec("node-3", note="kube-proxy's watch dies; healthz still 200"),
    NodeSpec("node-4", kernel=(4, 19), note="kernel 4.19 (no flush before 5.9)"),
]
STALLED = "node-3"
NEW_BACKENDS = ["10.244.100.20", "10.244.100.21"]


@dataclass(frozen=True)
class Timing:
    warm_up: float = 3.0
    surge_wait: float = 1.0
    lameduck: float = 2.0
    settle: float = 10.0


@dataclass
class ScenarioResult:
    with_proxymedic: bool
    stats: dict[str, ClientStats]
    rollout_started: float
    events: list[Mapping[str, Any]]


def _merge(stats: Sequence[ClientStats]) -> ClientStats:
    total = ClientStats()
    for one in stats:
        total.sent += one.sent
        total.failed += one.failed
        total.longest_failure = max(total.longest_failure, one.longest_failure)
        last = [t for t in (total.last_failure_at, one.last_failure_at) if t is not None]
        total.last_failure_at = max(last) if last else None
        total.failing_at_end = total.failing_at_end or one.failing_at_end
    return total


async def run_scenario(with_proxymedic: bool, timing: Timing = Timing()) -> ScenarioResult:
    settings = WorldSettings(
        nodes=NODES, with_proxymedic=with_proxymedic, policy_spec=POLICY, sync_period=3.0
    )
    async with World(settings) as world:
        if with_proxymedic:
            async with asyncio.timeout(30):
                await until(world.settled)
        world.traffic = True
        await asyncio.sleep(timing.warm_up)
        world.stall(STALLED, Stall.DEAD_WATCH)
        started = time.time()
        await world.rollout(NEW_BACKENDS, lameduck=timing.lameduck, surge_wait=timing.surge_wait)
        await asyncio.sleep(timing.settle)
        world.traffic = False
        end = time.time()
        stats = {}
        for name, node in world.nodes.items():
            for client in node.clients:
                client.stats.close(end)
            stats[name] = _merge([client.stats for client in node.clients])
        events = await world.events()
    return ScenarioResult(with_proxymedic, stats, started, events)


def policy_manifest(indent: str = "  ") -> str:
    """The ProxyHealthPolicy the demo runs with, as a manifest a user could apply."""
    manifest = {
        "apiVersion": "proxymedic.io/v1alpha1",
        "kind": "ProxyHealthPolicy",
        "metadata": {"name": "coredns"},
        "spec": POLICY,
    }
    text = yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False).rstrip("\n")
    return "\n".join(indent + line for line in text.splitlines())


def format_events(events: Sequence[Mapping[str, Any]], now: datetime) -> str:
    """Events as ``kubectl get events -A`` prints them."""
    rows = [("NAMESPACE", "LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE")]
    for event in events:
        involved = event.get("involvedObject", {})
        rows.append(
            (
                str(event["metadata"].get("namespace", "")),
                age(parse_time(event.get("lastTimestamp")), now),
                str(event.get("type", "")),
                str(event.get("reason", "")),
                f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
                str(event.get("message", "")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for row in rows:
        cells = "   ".join(cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True))
        lines.append(f"{cells}   {row[5]}".rstrip())
    return "\n".join(lines)


def _cell(stats: ClientStats, started: float) -> tuple[str, str, str]:
    failed = f"{stats.failed}/{stats.sent}"
    longest = f"{stats.longest_failure:.1f}s" if stats.failed else "-"
    if not stats.failed or stats.last_failure_at is None:
        last = "-"
    elif stats.failing_at_end:
        last = "still failing"
    else:
        last = f"+{stats.last_failure_at - started:.1f}s"
    return failed, longest, last


def format_table(without: ScenarioResult, with_pm: ScenarioResult) -> str:
    header = (
        "node",
        "condition",
        "failed",
        "longest outage",
        "last failure",
        "failed",
        "longest outage",
        "last failure",
    )
    rows = [header]
    for spec in NODES:
        rows.append(
            (
                spec.name,
                spec.note,
                *_cell(without.stats[spec.name], without.rollout_started),
                *_cell(with_pm.stats[spec.name], with_pm.rollout_started),
            )
        )
    rows.append(
        (
            "all",
            "",
            *_cell(_merge(list(without.stats.values())), without.rollout_started),
            *_cell(_merge(list(with_pm.stats.values())), with_pm.rollout_started),
        )
    )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    left = sum(widths[:2]) + 6
    span = sum(widths[2:5]) + 6
    title = " " * left + "without ProxyMedic".ljust(span + 3) + "with ProxyMedic"
    return "\n".join([title, *lines])


async def _main(timing: Timing) -> tuple[ScenarioResult, ScenarioResult]:
    print("[1/2] CoreDNS rollout without ProxyMedic ...", flush=True)
    without = await run_scenario(False, timing)
    print("[2/2] CoreDNS rollout with ProxyMedic ...", flush=True)
    with_pm = await run_scenario(True, timing)
    return without, with_pm


def run_demo(timing: Timing = Timing()) -> int:
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("kopf").setLevel(logging.CRITICAL)
    clients = 2
    print("ProxyMedic demo: a CoreDNS rollout on a simulated 4-node cluster in IPVS mode.")
    print(
        f"Service {DNS_NAMESPACE}/{DNS_SERVICE} ({DNS_VIP}:53/UDP), 2 replicas replaced one at a time with a "
        f"{timing.lameduck:g}s lameduck; {clients} DNS clients per node, each re-using its source port, one "
        "query every 50 ms."
    )
    for spec in NODES:
        print(f"  {spec.name}: {spec.note}")
    print("\nThe run with ProxyMedic applies this policy (every repair enabled, short observation times):\n")
    print(policy_manifest())
    print()
    started = time.monotonic()
    without, with_pm = asyncio.run(_main(timing))
    print("\nEvents with ProxyMedic (kubectl get events -A):\n")
    print(format_events(with_pm.events, datetime.now(UTC)))
    print(
        "\nFailed DNS queries, the longest run of failures per node, and when the last one happened"
        " (from the start of the rollout):\n"
    )
    print(format_table(without, with_pm))
    print(f"\nDone in {time.monotonic() - started:.0f}s.")
    return 0
