"""Re-run every cluster-scale benchmark, print the figures, write docs/benchmarks/results.json, the
PNG plots and docs/benchmarks.md.

    .venv/bin/python -m bench            # the full run (~15 minutes on 2 cores)
    .venv/bin/python -m bench --quick    # small scales, a few minutes; writes under /tmp unless --out
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import platform
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import operator_flood, spread
from bench.footprint import agent_footprint, operator_footprint
from bench.kernel_vm import kernel_benchmarks
from bench.measured import PRODUCTION_POLICY, NodeKind, Scenario, scenario
from bench.rollout import STATUS_WRITE, Timing, run
from proxymedic.sim.coredns import POLICY
from proxymedic.sim.kubeproxy import Stall
from tests.realk8s.binaries import Missing
from tests.realk8s.binaries import find as find_binaries

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION_HEARTBEAT = 300.0
SENSE_INTERVAL = 10.0
"""The agent's production sensing interval, used by the scale runs."""
COMMAND = ".venv/bin/python -m bench"


@dataclass(frozen=True)
class Plan:
    dns_nodes: int
    scales: tuple[int, ...]
    heartbeat: float
    services: int
    nodes_for_operator: int
    churn_seconds: float
    agent_seconds: float
    kernel_sizes: str
    """Connection entries for bench/kernel_flush.py, in the VM."""
    kernel_services: int
    kernel_real_servers: int
    """The big node of bench/kernel_scale.py, in the VM."""


FULL = Plan(
    dns_nodes=100,
    scales=(100, 1000, 5000),
    heartbeat=15.0,
    services=10_000,
    nodes_for_operator=1_000,
    churn_seconds=60.0,
    agent_seconds=30.0,
    kernel_sizes="10000,100000",
    kernel_services=10_000,
    kernel_real_servers=30_000,
)
QUICK = Plan(
    dns_nodes=20,
    scales=(20, 100),
    heartbeat=5.0,
    services=500,
    nodes_for_operator=50,
    churn_seconds=5.0,
    agent_seconds=3.0,
    kernel_sizes="10000",
    kernel_services=1_000,
    kernel_real_servers=3_000,
)


def dns_kinds(nodes: int) -> list[NodeKind]:
    """A mixed cluster: most nodes healthy, some with each failure of docs/architecture.md (F1-F7)."""
    some = max(1, nodes // 10)
    few = max(1, nodes // 20)
    return [
        NodeKind("healthy", nodes - 2 * some - 2 * few),
        NodeKind("expire_nodest_conn=0", some, expire_nodest_conn=0),
        NodeKind("kernel 4.19 (pre-5.9)", some, kernel=(4, 19)),
        NodeKind("kube-proxy watch dead", few, stall=Stall.DEAD_WATCH),
        NodeKind("kube-proxy sync hung", few, stall=Stall.HUNG),
    ]


def dns_settings(nodes: int, with_proxymedic: bool, min_observation: str | None = None) -> Scenario:
    """Short timings, as the demo uses, so that a run lasts seconds (stated in the doc)."""
    policy = dict(POLICY)
    if min_observation is not None:
        policy["guardrails"] = {**POLICY["guardrails"], "minObservation": min_observation}
    return scenario(
        dns_kinds(nodes),
        housekeeping=0.5,
        with_proxymedic=with_proxymedic,
        clients_per_node=2,
        query_interval=0.1,
        sync_period=3.0,
        agent_sense_interval=0.5,
        agent_heartbeat=60.0,
        agent_min_write_interval=0.05,
        agent_stale_after=3.0,
        agent_settle=1.0,
        policy_spec=policy,
    )


def scale_settings(nodes: int, heartbeat: float) -> Scenario:
    """Production settings of the agent (10 s sensing, 1 s write coalescing) and the policy's
    default guardrails; only the heartbeat is shortened (the figure is scaled to 300 s)."""
    settings = scenario(
        [NodeKind("healthy", nodes)],
        query_interval=0.5,
        agent_heartbeat=heartbeat,
        policy_spec=PRODUCTION_POLICY,
    )
    # A DaemonSet's pods on thousands of nodes do not all start within seconds: 50 a second.
    settings.settings.agent_start_spread = max(settings.settings.agent_start_spread, nodes / 50)
    return settings


def steady_heartbeat(plan: Plan, nodes: int) -> float:
    """The shortened heartbeat of the steady-state window: at most 100 status writes a second."""
    return max(plan.heartbeat, nodes / 100)


def effective_heartbeat(heartbeat: float) -> float:
    """The heartbeat is checked once per sensing round: a write falls due on the first round at
    least ``heartbeat`` after the last one (300 s is a multiple of the 10 s rounds)."""
    return math.ceil(heartbeat / SENSE_INTERVAL) * SENSE_INTERVAL


def steady_rate(result: dict[str, Any], heartbeat: float) -> dict[str, float]:
    steady = result["steady_writes"]
    seconds = steady["seconds"]
    status = steady["by_kind"].get(STATUS_WRITE, 0)
    other = steady["writes"] - status
    period = effective_heartbeat(heartbeat)
    return {
        "measured_per_s": steady["writes"] / seconds,
        "status_per_s": status / seconds,
        "other_per_s": other / seconds,
        "status_per_node_period": status / result["nodes"] / (seconds / period),
        "scaled_per_s": status / seconds * period / PRODUCTION_HEARTBEAT + other / seconds,
        "heartbeat": heartbeat,
        "period": period,
        "window": seconds,
    }


DNS_MODES: tuple[tuple[float, str, str | None, tuple[bool, ...]], ...] = (
    (2.0, "graceful (2 s lameduck)", None, (False, True)),
    (0.0, "killed outright", None, (False, True)),
    # The same rollout with a shorter minimum observation: kube-proxy on the stalled nodes is
    # restarted before the second old pod dies. Without ProxyMedic the policy plays no part.
    (0.0, "killed outright, minObservation 1 s", "1s", (True,)),
)


async def dns_benchmarks(plan: Plan, log: list[str]) -> list[dict[str, Any]]:
    results = []
    for lameduck, mode, min_observation, variants in DNS_MODES:
        for with_pm in variants:
            timing = Timing(warm_up=3.0, surge_wait=1.0, lameduck=lameduck, settle=10.0)
            label = f"{mode}, {'with' if with_pm else 'without'} ProxyMedic"
            say(log, f"DNS scenario: {plan.dns_nodes} nodes, {label} ...")
            result = await run(dns_settings(plan.dns_nodes, with_pm, min_observation), timing, label)
            result["mode"] = mode
            result["min_observation"] = min_observation or POLICY["guardrails"]["minObservation"]
            results.append(result)
            for kind, stats in result["dns"].items():
                bound = stats["bound"]
                bound_text = (
                    "-" if bound == 0.0 else ("never (unbounded)" if bound is None else f"{bound:.0f}s")
                )
                say(
                    log,
                    f"  {kind:28s} nodes={stats['nodes']:4d} failed={stats['failed']:6d}/{stats['sent']:7d} "
                    f"longest={stats['longest_failure']:5.1f}s "
                    f"max/client={stats['max_failed_per_client']:4d} "
                    f"failing at end={stats['failing_at_end']:3d} bound={bound_text}",
                )
            if with_pm:
                say(log, f"  kube-proxy restarts by kind of node: {result['kube_proxy_restarts_by_kind']}")
            say(log, f"  run lasted {result['rollout_seconds']:.1f}s from the rollout's start")
    return results


async def scale_benchmarks(plan: Plan, log: list[str]) -> list[dict[str, Any]]:
    """The rollout at each scale on the spread harness (``bench.spread``): the real kube-apiserver
    where its binaries are here, else the emulator (in a process of its own either way)."""
    results = []
    try:
        find_binaries()
        api = "real"
    except Missing as missing:
        say(log, f"Scale runs on the emulator: {missing}")
        api = "emulator"
    for nodes in plan.scales:
        heartbeat = steady_heartbeat(plan, nodes)
        window = 2 * effective_heartbeat(heartbeat)
        say(log, f"Rollout at {nodes} nodes (steady window {window:g}s, heartbeat {heartbeat:g}s) ...")
        timing = Timing(warm_up=3.0, steady=window, surge_wait=1.0, lameduck=2.0, settle=8.0)
        result = await spread.run(
            scale_settings(nodes, PRODUCTION_HEARTBEAT),
            timing,
            f"{nodes} nodes",
            PRODUCTION_HEARTBEAT,
            api=api,
            steady_heartbeat=heartbeat,
        )
        result["steady"] = steady_rate(result, heartbeat)
        rollout = result["rollout_writes"]
        result["rollout_rate"] = rollout["writes"] / rollout["seconds"]
        result["status_writes_per_node"] = rollout["by_kind"].get(STATUS_WRITE, 0) / nodes
        results.append(result)
        lat = result["latency"]
        harness = result["harness"]
        say(
            log,
            f"  harness: {harness['api']} API server, {harness['workers']} node processes; cores used in the "
            "rollout: "
            + ", ".join(f"{role} {cores:.2f}" for role, cores in harness["cpu_cores"].items())
            + "; stages p50/p99: "
            + ", ".join(f"{name} {ms(v['p50'])}/{ms(v['p99'])}" for name, v in lat["stages"].items()),
        )
        say(
            log,
            f"  repair latency over {lat['count']} node results: p50 {ms(lat['p50'])}, p99 {ms(lat['p99'])}, "
            f"max {ms(lat['max'])}; intent seen by the agents "
            + ", ".join(f"{ip} +{ms(v)}" for ip, v in lat["intent_seen_after"].items())
            + f"; agents ready after {result['ready_after']:.0f}s, operator quiet after "
            + f"{result['quiet_after']:.0f}s more",
        )
        steady = result["steady"]
        say(
            log,
            f"  API writes steady: {steady['measured_per_s']:.1f}/s measured at heartbeat "
            f"{heartbeat:g}s "
            f"(every {steady['period']:g}s; {steady['status_per_s']:.1f}/s status, "
            f"{steady['status_per_node_period']:.2f} per node per period, {steady['other_per_s']:.2f}/s "
            f"other) -> "
            f"{steady['scaled_per_s']:.1f}/s at the 300 s heartbeat; rollout: "
            f"{result['rollout_rate']:.1f}/s over "
            f"{rollout['seconds']:.0f}s, {result['status_writes_per_node']:.2f} status writes per node; "
            f"{dict(list(rollout['by_kind'].items())[:6])}",
        )
    return results


async def operator_benchmarks(plan: Plan, log: list[str]) -> list[dict[str, Any]]:
    """The operator's part of the latency alone, quiet and while every node reports."""
    results = []
    for nodes in plan.scales:
        if nodes < 1000 and plan is FULL:
            continue
        say(
            log,
            f"Operator alone at {nodes} nodes: slice change to intent, quiet and while every node reports",
        )
        result = await operator_flood.measure(nodes, changes=5)
        say(log, "  " + operator_flood.describe(result))
        results.append(result)
    return results


async def footprint_benchmarks(plan: Plan, log: list[str]) -> dict[str, Any]:
    say(log, f"Operator footprint: {plan.services} Services, {plan.services * 10} endpoints, churn ...")
    operator = await operator_footprint(
        services=plan.services,
        nodes=plan.nodes_for_operator,
        churn_seconds=plan.churn_seconds,
        idle_seconds=min(20.0, plan.churn_seconds),
    )
    say(
        log,
        f"  synced after {operator['synced_after']:.0f}s; idle RSS {operator['idle_rss_mb']:.0f} MB, "
        f"CPU {operator['idle_cpu_percent']:.1f}%; churn {operator['churn_changes']} slice changes in "
        f"{operator['churn_seconds']:.0f}s: peak RSS {operator['churn_rss_mb_peak']:.0f} MB, "
        f"CPU {operator['churn_cpu_percent']:.1f}%; {operator['intents_created']} intents open at the end",
    )
    say(log, "Agent footprint ...")
    agent = await agent_footprint(plan.agent_seconds)
    share = agent.pop("kubernetes_client_mb")
    imports = agent.pop("imports")
    for label, data in agent.items():
        if "skipped" in data:
            say(log, f"  agent ({label}): not measured: {data['skipped']}")
            continue
        say(
            log,
            f"  agent ({label}): RSS {data['rss_mb']:.0f} MB, idle CPU {data['idle_cpu_percent']:.2f}% "
            f"over {data['seconds']:.0f}s"
            + (
                f"; kubernetes client imported: {data['kubernetes_imported']}"
                if "kubernetes_imported" in data
                else ""
            )
            + (f"; problems: {data['problems']}" if data.get("problems") else ""),
        )
    say(
        log,
        f"  the kubernetes client (imported for --kubeconfig only, not in a pod) adds {share:.1f} MB: "
        f"the kernel agent less that is {agent['kernel']['rss_mb'] - share:.0f} MB",
    )
    top = ", ".join(f"{group['name']} {group['mb']:.1f} MB" for group in imports["groups"][:5])
    say(
        log, f"  the agent's start: {imports['total_mb']:.1f} MB, Python {imports['python_mb']:.1f} MB; {top}"
    )
    return {"operator": operator, "agent": agent, "kubernetes_client_mb": share, "agent_imports": imports}


async def kernel_section(plan: Plan, log: list[str]) -> dict[str, Any]:
    say(
        log,
        "Kernel (in the VM): the flush vs the CLI tools, and a node with "
        f"{plan.kernel_services:,} virtual servers ...",
    )
    result = await kernel_benchmarks(plan.kernel_sizes, plan.kernel_services, plan.kernel_real_servers, log)
    if "skipped" in result:
        say(log, f"  skipped: {result['skipped']}")
    return result


def say(log: list[str], line: str) -> None:
    print(line, flush=True)
    log.append(line)


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.0f} ms"


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = int(line.split()[1]) // 1024
    import os

    return {
        "cores": os.cpu_count(),
        "memory_mib": memory,
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


SECTIONS = ("dns", "scale", "operator", "footprint", "kernel")


async def main_async(plan: Plan, only: set[str], previous: dict[str, Any] | None) -> dict[str, Any]:
    """Run the sections asked for; with a subset, keep the other sections of the previous results."""
    results: dict[str, Any] = dict(previous or {})
    # When each section ran: a subset run keeps the other sections of an earlier run, and says so.
    earlier = str(results.get("machine", {}).get("date", "an earlier run"))
    dates: dict[str, str] = {
        section: str((results.get("section_dates") or {}).get(section, earlier))
        for section in SECTIONS
        if section in results
    }
    results.update(machine=machine(), plan=plan.__dict__)
    logs: dict[str, list[str]] = dict(results.get("logs") or {})
    seconds: dict[str, float] = dict(results.get("section_seconds") or {})
    benches: dict[str, Callable[[Plan, list[str]], Awaitable[Any]]] = {
        "dns": dns_benchmarks,
        "scale": scale_benchmarks,
        "operator": operator_benchmarks,
        "footprint": footprint_benchmarks,
        "kernel": kernel_section,
    }
    failed: dict[str, str] = {}
    for section, bench in benches.items():
        if section not in only:
            continue
        log: list[str] = []
        started = time.monotonic()
        try:
            results[section] = await bench(plan, log)
        except Exception as exc:
            # One section's failure must not throw away the hour the others took: the report says
            # the section was not measured, and the command exits non-zero.
            traceback.print_exc()
            say(log, f"  the {section} section failed: {type(exc).__name__}: {exc}")
            failed[section] = f"{type(exc).__name__}: {exc}"
            results.pop(section, None)
            dates.pop(section, None)
        else:
            dates[section] = results["machine"]["date"]
        seconds[section] = time.monotonic() - started
        logs[section] = log
    results["logs"], results["section_seconds"], results["section_dates"] = logs, seconds, dates
    results["log"] = [line for section in SECTIONS for line in logs.get(section, [])]
    results["seconds"] = sum(seconds.values())
    results["failed"] = failed
    print(f"All benchmarks took {results['seconds'] / 60:.1f} minutes.")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small scales: a few minutes")
    parser.add_argument("--out", type=Path, help="where to write results, plots and the doc")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help="comma-separated subset of " + ",".join(SECTIONS)
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="run nothing: write the plots, the doc and the README table again from results.json",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    plan = QUICK if args.quick else FULL
    out: Path = args.out or (Path("/tmp/proxymedic-bench-quick") if args.quick else ROOT / "docs")
    if args.render_only:
        from bench.report import write_all

        write_all(json.loads((out / "benchmarks" / "results.json").read_text()), out)
        print(f"Plots and the report written again under {out}")
        return 0
    only = set(args.only.split(","))
    previous_file = out / "benchmarks" / "results.json"
    previous = None
    if only != set(SECTIONS) and previous_file.exists():
        previous = json.loads(previous_file.read_text())
    results = asyncio.run(main_async(plan, only, previous))
    results["command"] = (
        COMMAND
        + (" --quick" if args.quick else "")
        + (f" --only {args.only}" if only != set(SECTIONS) else "")
    )
    from bench.report import write_all

    write_all(results, out)
    print(f"Results, plots and the report written under {out}")
    if results["failed"]:
        print(f"Sections that failed: {', '.join(results['failed'])}", file=sys.stderr)
        return 1
    return 0
