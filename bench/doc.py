"""Render docs/benchmarks.md from one run's results: every figure in it comes from ``python -m bench``."""

from __future__ import annotations

import math
from typing import Any

GOALS = {
    "latency_1000": 0.250,
    "latency_5000": 1.0,
    "writes_5000": 20.0,
    "operator_rss": 100.0,
    "agent_rss": 50.0,
    "kernel_round_cpu": 0.050,
    "kernel_intent_cpu": 0.100,
    "kernel_flush_ratio": 1.0,
}


def _ms(seconds: float | None) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "n/a"
    return f"{seconds * 1000:,.0f} ms"


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _bound(value: float | None) -> str:
    if value is None:
        return "never: a stalled kube-proxy keeps the dead real server"
    if value == 0.0:
        return "-"
    return f"{value:.0f} s (the UDP timeout)"


def _scale_by_nodes(results: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {run["nodes"]: run for run in results.get("scale") or []}


def without_run(dns: list[dict[str, Any]], run: dict[str, Any]) -> dict[str, Any]:
    """The run without ProxyMedic to compare ``run`` with: the same mode, or for a variant that only
    changes the policy, the run with the same termination (without ProxyMedic no policy applies)."""
    same_mode = [r for r in dns if r["mode"] == run["mode"] and not r["with_proxymedic"]]
    return (same_mode or [r for r in dns if r["lameduck"] == run["lameduck"] and not r["with_proxymedic"]])[0]


def _restarts(run: dict[str, Any]) -> str:
    by_kind = {kind: n for kind, n in (run.get("kube_proxy_restarts_by_kind") or {}).items() if n}
    if not by_kind:
        return f"{run['kube_proxy_restarts']} kube-proxy restarts"
    return (
        f"{run['kube_proxy_restarts']} kube-proxy restarts ("
        + ", ".join(f"{kind}: {n}" for kind, n in by_kind.items())
        + ")"
    )


def summary(results: dict[str, Any]) -> list[str]:
    """The compact table for the README."""
    rows = ["| Figure | Measured | Goal |", "|---|---|---|"]
    for nodes, run in _scale_by_nodes(results).items():
        lat = run["latency"]
        goal = {1000: "p99 ≤ 250 ms", 5000: "p99 ≤ 1 s"}.get(nodes, "")
        rows.append(
            f"| Repair latency, {nodes:,} nodes (p50 / p99 / max) | "
            f"{_ms(lat['p50'])} / {_ms(lat['p99'])} / {_ms(lat['max'])} | {goal} |"
        )
    dns = results.get("dns") or []
    for run in dns:
        if not run["with_proxymedic"]:
            continue
        without = without_run(dns, run)
        lost_with = sum(k["failed"] for k in run["dns"].values())
        lost_without = sum(k["failed"] for k in without["dns"].values())
        worst = max(k["max_failed_per_client"] for k in run["dns"].values())
        rows.append(
            f"| DNS queries lost, {run['nodes']} nodes, {run['mode']} (without → with ProxyMedic) | "
            f"{lost_without:,} → {lost_with:,} (at most {worst} per client with ProxyMedic) | "
            + ("0 where pods terminate gracefully |" if run["lameduck"] > 0 else "≤ 1 per client |")
        )
    for nodes, run in _scale_by_nodes(results).items():
        if nodes < 1000:
            continue
        steady = run["steady"]
        rows.append(
            f"| API writes, {nodes:,} nodes: steady (300 s heartbeat) / rollout | "
            f"{steady['scaled_per_s']:.1f}/s / {run['rollout_rate']:.0f}/s | "
            + ("steady ≤ 20/s |" if nodes == 5000 else "|")
        )
    fp = results.get("footprint")
    if fp:
        op = fp["operator"]
        rows.append(
            f"| Operator RSS, {op['services']:,} Services / {op['endpoints']:,} endpoints, churn | "
            f"{op['churn_rss_mb_peak']:.0f} MB peak, CPU {op['churn_cpu_percent']:.0f}% under churn | ≤ "
            f"100 MB |"
        )
        agent = fp["agent"]
        kernel = agent["kernel"]
        pod = _pod_agent(fp)
        share = fp.get("kubernetes_client_mb", 0.0)
        if pod:
            rows.append(
                f"| Agent RSS / idle CPU (`proxymedic agent` as in a pod) | {pod['rss_mb']:.0f} MB "
                f"({kernel['rss_mb']:.0f} MB with `--kubeconfig`) / {pod['idle_cpu_percent']:.2f}% | "
                f"≤ {GOALS['agent_rss']:.0f} MB |"
            )
        else:
            rows.append(
                f"| Agent RSS / idle CPU (`proxymedic agent --kubeconfig`) | {kernel['rss_mb']:.0f} MB "
                f"(≈ {kernel['rss_mb'] - share:.0f} MB in a pod, without the kubernetes client) / "
                f"{kernel['idle_cpu_percent']:.2f}% | ≤ {GOALS['agent_rss']:.0f} MB |"
            )
    kernel = results.get("kernel") or {}
    big, factor = kernel.get("scale"), emulation_factor(kernel)
    if big and factor:
        table = big["table"]
        rows.append(
            f"| Agent CPU per sensing round, {table['virtual_servers']:,} virtual servers, 2 selected "
            f"(real IPVS in the emulated VM; ≈ at this machine's speed) | {_ms(big['sense_scoped']['cpu'])}; "
            f"≈ {_ms(big['sense_scoped']['cpu'] / factor)} (the whole table: "
            f"≈ {_ms(big['sense_whole']['cpu'] / factor)}) | ≤ 50 ms |"
        )
        rows.append(
            f"| Agent CPU per flush intent, same node | {_ms(big['flush_intent']['cpu_max'])} at most; "
            f"≈ {_ms(big['flush_intent']['cpu_max'] / factor)} | ≤ 100 ms |"
        )
    return rows


def render(results: dict[str, Any], plots: dict[str, str]) -> str:
    m = results["machine"]
    plan = results["plan"]
    out: list[str] = []
    add = out.append
    add("# Benchmarks at cluster scale\n")
    add(
        "Repair latency, DNS failures during a CoreDNS rollout, API write load, the footprint of the "
        "two processes and the agent's cost on a real kernel. ProxyMedic's real operator (a "
        "`proxymedic operator` process) and the real agent code run for every simulated node, with "
        "the modelled dataplane; the scale runs use the real kube-apiserver (the API emulator where "
        "its binaries are missing), the DNS scenarios the emulator, and the kernel figures real IPVS "
        "in a VM (each section says how it ran). Every figure below comes from one run of:\n"
    )
    add(f"```sh\n{results['command']}\n```\n")
    add(
        f"It took {results['seconds'] / 60:.1f} minutes on the machine below. `--quick` runs the same "
        "benchmarks at small scales in a few minutes (it writes under /tmp unless `--out` says otherwise). "
        "`make test` does not run them; `tests/scenarios/test_bench_smoke.py` runs the code at a tiny "
        "scale so it cannot rot.\n"
    )
    dates = results.get("section_dates") or {}
    if len(set(dates.values())) > 1:
        add(
            "This document combines runs: `--only` re-ran some sections and kept the others of an earlier "
            "run on the same machine. When each section ran: "
            + ", ".join(f"{section} {date}" for section, date in dates.items())
            + ".\n"
        )
    failed = results.get("failed") or {}
    if failed:
        add(
            "**Sections that failed in this run, so not measured:** "
            + "; ".join(f"{section} ({why})" for section, why in failed.items())
            + ".\n"
        )
    add("| Machine | |\n|---|---|")
    add(f"| CPU | {m['cpu']}, {m['cores']} cores |")
    add(f"| Memory | {m['memory_mib'] / 1024:.0f} GiB |")
    add(f"| Python | {m['python']} |")
    add(f"| Kernel | {m['kernel']} |")
    add(f"| Date | {m['date']} |\n")
    add(
        "The machine is shared and noisy (other jobs run at the same time); compare figures of one run "
        "with each other rather than across runs.\n"
    )
    add("## Summary\n")
    out.extend(summary(results))
    add("")
    add(_goals(results))
    add(_method(results))
    add(_latency(results, plots))
    add(_operator_alone(results))
    add(_dns(results, plots))
    add(_writes(results, plots))
    add(_footprint(results, plots))
    add(_kernel(results))
    add(_shifts())
    add(_changes(results))
    add(_gaps(plan))
    add("## Raw output\n")
    add("The figures as the command printed them (`docs/benchmarks/results.json` has everything):\n")
    add("```")
    out.extend(results["log"])
    add("```\n")
    return "\n".join(out)


def _goals(results: dict[str, Any]) -> str:
    lines = ["### Goals\n", "| Goal | Result |", "|---|---|"]
    scale = _scale_by_nodes(results)
    if 1000 in scale:
        p99 = scale[1000]["latency"]["p99"]
        lines.append(f"| Repair latency p99 ≤ 250 ms at 1,000 nodes | {_ms(p99)}: {_met(p99 <= 0.25)} |")
    if 5000 in scale:
        p99 = scale[5000]["latency"]["p99"]
        lines.append(f"| Repair latency p99 ≤ 1 s at 5,000 nodes | {_ms(p99)}: {_met(p99 <= 1.0)} |")
        steady = scale[5000]["steady"]["scaled_per_s"]
        lines.append(
            f"| Steady-state API writes ≤ 20/s at 5,000 nodes | {steady:.1f}/s: {_met(steady <= 20)} |"
        )
    for run in results.get("dns") or []:
        if not run["with_proxymedic"]:
            continue
        kinds = run["dns"]
        if run["lameduck"] > 0:
            lost = {k: v["failed"] for k, v in kinds.items() if v["failed"]}
            text = "0 lost" if not lost else ", ".join(f"{k}: {v}" for k, v in lost.items())
            ok = all(v == 0 for k, v in lost.items() if "pre-5.9" not in k)
            lines.append(
                f"| 0 DNS queries lost, graceful termination | {text}"
                + (
                    " (pre-5.9 kernels drop the first packet of each stale flow whatever ProxyMedic does, "
                    "see below); 0 on every other kind of node: "
                    if lost
                    else ": "
                )
                + f"{_met(ok)} |"
            )
        else:
            worst = {k: v["max_failed_per_client"] for k, v in kinds.items()}
            bad = {k: v for k, v in worst.items() if v > 1}
            variant = run.get("min_observation") not in (None, "2s")
            lines.append(
                "| Pods killed outright: no client loses more than one query"
                + (f" (policy's minObservation {run['min_observation']})" if variant else "")
                + " | "
                + (
                    "at most 1 per client: met"
                    if not bad
                    else ", ".join(f"{k}: up to {v}" for k, v in bad.items())
                    + " per client over the 2 pods replaced: "
                    + _met(False)
                )
                + " |"
            )
    fp = results.get("footprint")
    if fp:
        rss = fp["operator"]["churn_rss_mb_peak"]
        lines.append(
            f"| Operator RSS ≤ 100 MB at 10,000 Services / 100,000 endpoints | {rss:.0f} MB: "
            f"{_met(rss <= GOALS['operator_rss'])} (docs/benchmarks-notes.md has its profile) |"
        )
        agent = fp["agent"]["kernel"]["rss_mb"]
        pod = _pod_agent(fp)
        share = fp.get("kubernetes_client_mb", 0.0)
        if pod:
            # The goal is about the agent as deployed; a kubeconfig is how it runs outside a cluster.
            client = "imported" if pod.get("kubernetes_imported") else "not imported"
            lines.append(
                f"| Agent RSS ≤ {GOALS['agent_rss']:.0f} MB, as in a pod | {pod['rss_mb']:.0f} MB "
                f"(service-account token, a real kube-apiserver, the kubernetes client {client}): "
                f"{_met(pod['rss_mb'] <= GOALS['agent_rss'])}; {agent:.0f} MB with a kubeconfig |"
            )
        else:
            skipped = (fp["agent"].get("pod") or {}).get("skipped")
            lines.append(
                f"| Agent RSS ≤ {GOALS['agent_rss']:.0f} MB | {agent:.0f} MB with a kubeconfig: "
                f"{_met(agent <= GOALS['agent_rss'])}; in a pod about {agent - share:.0f} MB (that figure "
                f"less the kubernetes client's measured {share:.1f} MB, which a pod no longer imports; "
                f"not measured in a pod{': ' + skipped if skipped else ''}): "
                f"{_met(agent - share <= GOALS['agent_rss'])} |"
            )
    lines.extend(_kernel_goals(results))
    return "\n".join(lines) + "\n"


def emulation_factor(kernel: dict[str, Any]) -> float | None:
    """How many times slower the VM ran the agent's pure-Python sensing round than this machine."""
    big, host = kernel.get("scale"), kernel.get("host_python_reference")
    if not big or not host or "python_reference" not in big:
        return None
    return float(big["python_reference"]) / float(host)


def _emulated_verdict(seconds: float, factor: float, goal: float) -> str:
    """A figure measured under emulation, judged as measured; scaled by the emulation factor it is
    an estimate of this machine's speed, said to be one, never the verdict."""
    scaled = seconds / factor
    within = "within" if scaled <= goal else "over"
    return (
        f"{_ms(seconds)} as measured, under emulation: {_met(seconds <= goal)}; ÷ the emulation factor "
        f"measured in the same run ({factor:.1f}) ≈ {_ms(scaled)}, {within} the goal (an estimate: "
        "this machine has no KVM, so no native figure)"
    )


def _kernel_goals(results: dict[str, Any]) -> list[str]:
    kernel = results.get("kernel") or {}
    if "skipped" in kernel:
        return [f"| The agent on a big node, real IPVS | not measured in this run: {kernel['skipped']} |"]
    big, flush = kernel.get("scale"), kernel.get("flush") or {}
    lines = []
    factor = emulation_factor(kernel)
    if big and factor:
        n = big["table"]["virtual_servers"]
        scoped, intent = big["sense_scoped"]["cpu"], big["flush_intent"]["cpu_max"]
        lines.append(
            f"| ≤ 50 ms CPU per sensing round, {n:,} virtual servers, 2 selected | "
            + _emulated_verdict(scoped, factor, GOALS["kernel_round_cpu"])
            + f" (the whole table: {_ms(big['sense_whole']['cpu'])} emulated, ≈ "
            f"{_ms(big['sense_whole']['cpu'] / factor)}) |"
        )
        lines.append(
            "| ≤ 100 ms CPU per flush intent on that node | at most "
            + _emulated_verdict(intent, factor, GOALS["kernel_intent_cpu"])
            + " |"
        )
    for size, run in sorted(flush.items(), key=lambda item: int(item[0])):
        ratio = run["ipvs cli call"] / run["ipvs adapter call"]
        lines.append(
            f"| IPVS flush at least as fast as ipvsadm ({int(size):,} entries) | ratio "
            f"{ratio:.2f}: {_met(ratio >= GOALS['kernel_flush_ratio'])} |"
        )
    return lines


def _method(results: dict[str, Any]) -> str:
    return """## How the benchmarks run

Two harnesses: the DNS scenarios run the simulated cluster of the demo and the scenario tests in
one process; the scale runs (repair latency, API writes at 100 to 5,000 nodes) spread the cluster
over processes, each agent with its own watches, against the real kube-apiserver.

- **Nodes** (both): each simulated node has its own modelled kernel (`ModelledNode` of
  `proxymedic.sim.kernel`: IPVS, connection table, conntrack, sysctls, as docs/kernel.md measured
  them), its own simulated kube-proxy (`KubeProxySim`) and its DNS clients (each re-using one
  source port). Its agent is ProxyMedic's own code: an `AgentRunner` around a `NodeAgent` creates
  the node's NodeProxyHealth, reads its labels, watches policies and intents, senses and reports
  (one merge patch per write), and executes intents (`NodeAgent.on_intent` → the executor).
- **Operator** (both): a real `proxymedic operator --kubeconfig … --standalone` subprocess (Kopf,
  its own process and event loop).
- **DNS scenarios** (`bench/measured.py`, `proxymedic.sim.world.World`): the emulator
  (`proxymedic.emulator`, Python on kmock) and every node in the benchmark's process; one
  RemediationIntent watch feeds every agent's inbox in order. Setup objects go straight into the
  emulator's store; a counting hook records every write request.
- **Scale runs** (`bench/spread.py`, `python -m bench.spread rollout --nodes N`): the real
  kube-apiserver v1.36 with etcd on this machine (`--api emulator` runs the emulator in a process
  of its own instead, where the binaries are missing). ProxyMedic is installed from its chart with
  the real Helm engine; the operator runs with its ServiceAccount's token, and each agent with a
  token bound to an agent Pod object on its node, so RBAC, the admission policy's node check on
  every report and API Priority and Fairness apply as on a cluster. The nodes are spread over
  four processes; each agent has its own HTTP client, its own intent watch and its own policy
  watch. The benchmark's process plays the rest of the cluster: the rollout's EndpointSlice
  changes (each node's kube-proxy learns of a change right after the API accepted it), the
  kube-proxy DaemonSet, and a watch of intents of its own. Write requests are counted from the
  API server's audit log, those it refused (429, priority and fairness) included: a refused
  write is load too, and an agent sends it again. Everything shares this machine's cores: the
  harness's own cost is measured beside the latencies (CPU of each process during the rollout,
  and how late each node process's event loop ran).
- **Repair latency** of a node: from the moment the EndpointSlice change that took the old pod
  out of use was sent (its `ready` turning false, or the endpoint removed when the pod is killed)
  to the `completedAt` of that node's `IntentResult`. Each rollout replaces both CoreDNS pods one
  at a time (maxSurge 1), so each node contributes two results. The scale runs split it into
  stages: the operator's (the slice change to the intent appearing in a watch), the intent's
  delivery to the agent's watch, the agent's checks before acting (parsing the intent and reading
  the Service's EndpointSlices from the API, so that an intent decided before a backend came back
  never removes it), and the dataplane change.
- **A quiet start**: each rollout starts once the operator process has used less than a fifth of
  a core over one second ("operator quiet after" in the raw output), so that reports still queued
  from the shortened heartbeat of the steady-state window (or from thousands of agents starting)
  are not counted as the rollout's cost.
- **A rollout**: a new pod is added; 1 s later an old pod becomes not ready and terminates
  with a lameduck (it still answers) of 2 s, or is killed outright; then the second pod the same
  way. DNS clients query every 100 ms (DNS scenarios) or 500 ms (scale runs).
"""


def _latency(results: dict[str, Any], plots: dict[str, str]) -> str:
    scale = results.get("scale") or []
    if not scale:
        return ""
    lines = [
        "## Repair latency\n",
        "All nodes healthy, agents with their production settings (sensing every 10 s, results of "
        "intents arriving within 1 s share one write), the policy's default guardrails, a graceful "
        "rollout (2 s lameduck), on the spread harness (above).\n",
        "| Nodes | API server | Node results | p50 | p99 | max | Intent in a watch after (per pod) |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in scale:
        lat = run["latency"]
        seen = ", ".join(_ms(v) for v in lat["intent_seen_after"].values())
        api = (run.get("harness") or {}).get("api", "emulator, in-process")
        lines.append(
            f"| {run['nodes']:,} | {api} | {lat['count']:,} of {2 * run['nodes']:,} | {_ms(lat['p50'])} | "
            f"{_ms(lat['p99'])} | {_ms(lat['max'])} | {seen} |"
        )
    staged = [run for run in scale if "stages" in run["latency"]]
    if staged:
        names = {
            "operator": "Operator: slice change to intent",
            "delivery": "Intent to the agent's watch",
            "agent_checks": "Agent's checks (EndpointSlice read)",
            "execute": "Dataplane change",
        }
        lines += [
            "\nWhere each node's latency went (p50 / p99 over the node results):\n",
            "| Nodes | " + " | ".join(names.values()) + " |",
            "|---|" + "---|" * len(names),
        ]
        for run in staged:
            stages = run["latency"]["stages"]
            cells = [f"{_ms(stages[k]['p50'])} / {_ms(stages[k]['p99'])}" for k in names if k in stages]
            lines.append(f"| {run['nodes']:,} | " + " | ".join(cells) + " |")
        lines += [
            "\nThe harness's own cost: cores each part used during the rollout (this machine has "
            f"{staged[0]['harness'].get('machine_cores', '?')}), and how late the node processes' event "
            "loops ran (p99 of a 100 ms sleep's overshoot, worst node process):\n",
            "| Nodes | API server (kube-apiserver + etcd) | Operator | Node processes (agents, kube-proxies, "
            "clients) | Event loop lateness p99 |",
            "|---|---|---|---|---|",
        ]
        for run in staged:
            harness = run["harness"]
            cores = harness["cpu_cores"]
            lag = max((probe["p99"] for probe in harness["loop_lag"]), default=float("nan"))
            lines.append(
                f"| {run['nodes']:,} | {cores.get('apiserver', 0):.2f} | {cores.get('operator', 0):.2f} | "
                f"{cores.get('nodes', 0):.2f} | {_ms(lag)} |"
            )
        biggest = staged[-1]
        stages = biggest["latency"]["stages"]
        largest = max(stages, key=lambda k: stages[k]["p50"])
        lines.append(
            "\nOn a cluster each agent works on its own node and the API server has cores of its own; "
            "here the API server, the operator and every simulated node share this machine's, so the "
            "latencies are what the code needs on this machine, not a cluster's. "
            f'At {biggest["nodes"]:,} nodes the largest stage is "{names[largest]}" '
            f"(p50 {_ms(stages[largest]['p50'])})."
            + (
                " That is one LIST of the Service's EndpointSlices per agent per intent, all arriving at the "
                "API server at once, queued by its priority and fairness behind the agents' reports; an "
                "EndpointSlice watch in the agent answering from its cache would remove it, and is open work "
                "(docs/benchmarks-notes.md)."
                if largest == "agent_checks"
                else ""
            )
            + "\n"
        )
    if "latency" in plots:
        lines.append(f"![Repair latency per node]({plots['latency']})\n")
    return "\n".join(lines)


def _operator_alone(results: dict[str, Any]) -> str:
    runs = results.get("operator") or []
    if not runs:
        return ""
    lines = [
        "### The operator's part alone\n",
        "`python -m bench.operator_flood`: a real `proxymedic operator` process and the emulator, without "
        "simulated agents. Every node has a NodeProxyHealth; an EndpointSlice change takes one CoreDNS pod "
        "out of use, and the figure is the time until the operator has created the intent to flush it "
        "(the Service's coalescing window of 50 ms included). Each change is made once on a quiet control "
        "plane, and once while every node's report arrives (all nodes within "
        f"{runs[0]['flood_seconds']:g} s, the slice changing half-way: what follows each step of a "
        "rollout at scale, when every node reports its result). The reports are written straight into the "
        "emulator's store, so the emulator is not the bottleneck here; the policy has its default "
        "guardrails.\n",
        "| Nodes | Changes | Quiet: slice change to intent (each change) | Reports arriving | Operator CPU "
        "while they arrive | During the reports: slice change to intent (each change) |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        lines.append(
            f"| {run['nodes']:,} | {run['changes']} | {', '.join(_ms(v) for v in run['quiet'])} | "
            f"{run['reports_per_second']:,.0f}/s | {run['operator_cpu_percent_in_flood']:.0f}% | "
            f"{', '.join(_ms(v) for v in run['flooded'])} |"
        )
    lines.append(
        "\nAt 5,000 nodes reporting within a few seconds the operator uses a whole core, mostly in "
        "Kopf's per-event processing of NodeProxyHealth events (py-spy), and a slice change then waits "
        "behind them: the figures during the reports. A trial that queued reports (the latest per "
        "node, judged after EndpointSlice decisions) shortened the tail on a quiet control plane but "
        "had a healthy node's kube-proxy restarted in the reliability suite's throttling scenario; it "
        "was left out.\n"
    )
    return "\n".join(lines)


def _dns(results: dict[str, Any], plots: dict[str, str]) -> str:
    dns = results.get("dns") or []
    if not dns:
        return ""
    first = dns[0]
    lines = [
        "## DNS failures during a CoreDNS rollout\n",
        f"A mixed cluster of {first['nodes']} nodes: most healthy, 10% with "
        "`net.ipv4.vs.expire_nodest_conn=0`, 10% on a 4.19 kernel (before 5.9 the kernel does not "
        "flush the connections of a removed real server, and drops the first packet on a stale "
        "entry), 5% whose kube-proxy's EndpointSlice watch is dead (healthz stays 200, it resyncs its "
        "stale cache) and 5% whose kube-proxy sync hangs. "
        f"{first['clients_per_node']} DNS clients per node, one query every "
        f"{first['query_interval'] * 1000:.0f} ms each. The stall starts with the rollout. Timings are "
        "short so that a run lasts seconds, as in the demo: agents sense every 0.5 s, kube-proxy "
        "resyncs every 3 s, the policy's minimum observation is 2 s and its staleAfter 10 s. Each run "
        "lasts 3 s of traffic before the rollout and "
        f"{first['rollout_seconds']:.0f} s (graceful) or "
        f"{next((r['rollout_seconds'] for r in dns if r['lameduck'] == 0), 0):.0f} s (killed) from the "
        "rollout's start to the end of traffic.\n",
        "Without ProxyMedic the failures on the drifted nodes have not ended when the run stops; the last "
        "column gives how long they would last: the remaining lifetime of the stale IPVS entry (each "
        "entry's expiry in the model: the 300 s UDP timeout from its last forwarded packet, counted from "
        "the client's first failure), or never when a stalled kube-proxy keeps the dead pod as a real "
        "server (every forwarded query restarts the entry's timer, and kube-proxy does not recover on "
        "its own).\n",
    ]
    for mode in dict.fromkeys(r["mode"] for r in dns):
        runs = {r["with_proxymedic"]: r for r in dns if r["mode"] == mode}
        if False not in runs:
            runs[False] = without_run(dns, runs[True])
        lines.append(f"### {mode}\n")
        if runs[True].get("min_observation") not in (None, "2s"):
            lines.append(
                f"The policy's minimum observation is {runs[True]['min_observation']} instead of 2 s; "
                "everything else as above. The columns without ProxyMedic repeat the run above (without "
                "ProxyMedic no policy applies).\n"
            )
        lines.append(
            "| Nodes | Count | Failed queries without | Longest failure without | Clients failing at "
            "the end | "
            "Failure would last | Failed queries with ProxyMedic | Longest failure with | Most lost by "
            "one client |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for kind, without in runs[False]["dns"].items():
            with_pm = runs[True]["dns"][kind] if True in runs else None
            lines.append(
                f"| {kind} | {without['nodes']} | {without['failed']:,} / {without['sent']:,} | "
                f"{without['longest_failure']:.1f} s | {without['failing_at_end']} | "
                f"{_bound(without['bound'])} | "
                + (
                    f"{with_pm['failed']:,} / {with_pm['sent']:,} | {with_pm['longest_failure']:.1f} s | "
                    f"{with_pm['max_failed_per_client']} |"
                    if with_pm
                    else "| | |"
                )
            )
        if True in runs:
            lines.append(
                f"\nWith ProxyMedic: {_restarts(runs[True])}, repair latency p50 "
                f"{_ms(runs[True]['latency']['p50'])}, max {_ms(runs[True]['latency']['max'])}.\n"
            )
    lines.append(
        "On pre-5.9 kernels the first packet on a stale entry is lost whatever ProxyMedic does: the "
        'kernel has no flush to trigger (docs/architecture.md, "Choices, and why"). That is one query '
        "per client per pod replaced; a client whose flow was on each old pod in turn loses two over the "
        "rollout. On healthy nodes kube-proxy removes the real server and, with `expire_nodest_conn=1` on "
        "a 5.9+ kernel, the kernel flushes its entries: with graceful termination nothing is lost with "
        "or without ProxyMedic. A pod killed outright stops answering before anything can react: a "
        "client whose flow was on it loses the queries sent until kube-proxy's next sync (at most its "
        "1 s minimum sync period after its previous one) or ProxyMedic's flush, whichever comes first; "
        "whether a query falls into that gap depends on timing, so a run may show 0 or 1 per client on "
        "healthy nodes either way.\n"
    )
    lines.append(
        "On a node whose kube-proxy is stalled (its watch dead, or its sync hung) the stall began with "
        "the rollout, so kube-proxy never programmed the new pods. ProxyMedic removes the old pods' real "
        "servers once they leave the Service, but no live real server is left on that node until the "
        "operator has restarted kube-proxy. The missing real servers count only once kube-proxy has had "
        "the policy's `staleAfter` to program them (10 s here; a kube-proxy that is slow to sync is not "
        "a stalled one, and a false restart flushes every UDP conntrack entry of its node), and then "
        "the minimum observation (2 s here, 1 s in the last table): the clients of those nodes lose "
        "their queries for that long, graceful termination or not (the table's \"most lost by one "
        "client\"). The restarts by kind of node under each table show whether a healthy node's "
        "kube-proxy was restarted too. A shorter `staleAfter` or observation gives a kube-proxy that "
        "merely lags less time before it is restarted: the trade-off is the policy's "
        "(`restartKubeProxy.staleAfter`, `guardrails.minObservation`).\n"
    )
    if "dns" in plots:
        lines.append(f"![Failed DNS queries per kind of node]({plots['dns']})\n")
    return "\n".join(lines)


def _writes(results: dict[str, Any], plots: dict[str, str]) -> str:
    scale = results.get("scale") or []
    if not scale:
        return ""
    hb = scale[0]["steady"]["heartbeat"]
    period = scale[0]["steady"]["period"]
    window = scale[0]["steady"]["window"]
    lines = [
        "## API writes\n",
        f"The agents' heartbeat (a status write even when nothing changed, 300 s in production) is "
        f"shortened to {hb:g} s. An agent checks it once per sensing round (10 s), so it writes every "
        f"{period:g} s; the steady-state window lasts {window:.0f} s, two such periods, so every agent "
        "writes its heartbeat in it. The steady figure at 300 s scales the measured status writes by "
        f"{period:g}/300 (300 s is a multiple of the sensing round) and adds every other write unscaled "
        "(the operator's writes, if any). The rollout window runs from the first EndpointSlice change to "
        "the end of the run and counts every write; for the rollout the agents' heartbeat is back at 300 s "
        "(a shortened one would load the operator with reports a cluster does not send).\n",
        "| Nodes | Steady, measured (heartbeat "
        f"{hb:g} s) | of which status writes | Status writes per node per {period:g} s | Steady at the "
        f"300 s heartbeat | Rollout: writes/s | Rollout: seconds | Status writes per node in the "
        f"rollout | Writes by kind in the rollout |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in scale:
        steady = run["steady"]
        kinds = ", ".join(f"{k}: {v}" for k, v in run["rollout_writes"]["by_kind"].items())
        lines.append(
            f"| {run['nodes']:,} | {steady['measured_per_s']:.1f}/s | {steady['status_per_s']:.1f}/s | "
            f"{steady['status_per_node_period']:.2f} | {steady['scaled_per_s']:.1f}/s | "
            f"{run['rollout_rate']:.1f}/s | "
            f"{run['rollout_writes']['seconds']:.0f} | {run['status_writes_per_node']:.2f} | {kinds} |"
        )
    lines.append(
        "\nA rollout costs each node about one status write per pod replaced (the intent's result, and "
        "the real-server change kube-proxy made, usually share it). A steady-state figure below one write "
        "per node and period means some agents' sensing rounds ran late in the loaded process; at the "
        "300 s heartbeat each node writes at most once per 300 s, "
        "that is at most nodes/300 writes a second (16.7/s at 5,000 nodes) plus the operator's.\n"
    )
    if "writes" in plots:
        lines.append(f"![API writes per second]({plots['writes']})\n")
    return "\n".join(lines)


def _pod_agent(fp: dict[str, Any]) -> dict[str, Any] | None:
    """The agent measured as in a pod, or None: skipped, or a run from before it was measured."""
    pod = fp["agent"].get("pod") or {}
    return pod if "rss_mb" in pod else None


def _agent_imports(profile: dict[str, Any], top: int = 8) -> list[str]:
    """Where the agent's memory goes at start (``bench.footprint.agent_import_profile``)."""
    groups = profile["groups"]
    shown, rest = groups[:top], groups[top:]
    lines = [
        "#### Where the agent's memory goes\n",
        f"`{profile['command']}` as in a pod, in a fresh process stopped before its first API call "
        "(`python -m bench.footprint agent-imports`, a few seconds): the RSS each import added, less what "
        "its own imports added, summed by the package ProxyMedic's code imported, with whatever that "
        "import loaded first. So a module two packages use counts for the one that imported it first, in "
        "the agent's order (a standard-library module too: the standard library's row is what ProxyMedic "
        "imports from it directly); ProxyMedic's modules count by subpackage. Modules are read from "
        "bytecode, as the image has them.\n",
        "| Part | RSS | Modules |",
        "|---|---|---|",
        f"| Python at start | {profile['python_mb']:.1f} MB | |",
    ]
    lines += [f"| {group['name']} | {group['mb']:.1f} MB | {group['modules']} |" for group in shown]
    if rest:
        lines.append(
            f"| {len(rest)} more | {sum(group['mb'] for group in rest):.1f} MB | "
            f"{sum(group['modules'] for group in rest)} |"
        )
    lines += [
        f"| the rest of the start (parser, settings, metrics, adapters) | "
        f"{profile['outside_imports_mb']:.1f} MB | |",
        f"| **in all** | **{profile['total_mb']:.1f} MB** | |",
        "",
    ]
    return lines


def _footprint(results: dict[str, Any], plots: dict[str, str]) -> str:
    fp = results.get("footprint")
    if not fp:
        return ""
    op = fp["operator"]
    lines = [
        "## Footprint\n",
        "### Operator\n",
        f"A real `proxymedic operator` process against the emulator holding {op['services']:,} Services "
        f"with {op['endpoints']:,} endpoints (one EndpointSlice of 10 per Service; "
        f"{op['udp_services_selected']:,} UDP Services selected by a policy), {op['nodes']:,} Nodes and "
        f"their NodeProxyHealth reports. After its initial sync (the policy's status written and "
        f"the process below a fifth of a core: {op['synced_after']:.0f} s after start) it idles for a "
        f"while, then EndpointSlices churn: one "
        f"endpoint of a random Service replaced {op['churn_per_second']:g} times a second for "
        f"{op['churn_seconds']:.0f} s, while the nodes' reports keep arriving at the 300 s heartbeat "
        "rate. RSS from /proc/PID/status (VmRSS), CPU from /proc/PID/stat.\n",
        "| Phase | RSS | CPU (of one core) |",
        "|---|---|---|",
        f"| idle after the initial sync | {op['idle_rss_mb']:.0f} MB | {op['idle_cpu_percent']:.1f}% |",
        f"| churn ({op['churn_changes']:,} slice changes) | {op['churn_rss_mb_peak']:.0f} MB peak, "
        f"{op['churn_rss_mb_end']:.0f} MB at the end | {op['churn_cpu_percent']:.1f}% |",
        "",
        f"{op['intents_created']:,} flush intents were open at the end (a selected Service's backend "
        "left; intents live 10 minutes).\n",
    ]
    if "rss" in plots:
        lines.append(f"![Operator RSS]({plots['rss']})\n")
    agent = fp["agent"]
    lines += [
        "### Agent\n",
        "| Process | RSS | Idle CPU | Notes |",
        "|---|---|---|---|",
    ]
    notes = {
        "pod": "`proxymedic agent` as a DaemonSet pod runs it, the figure the goal is judged by: no "
        "`--kubeconfig`, `KUBERNETES_SERVICE_HOST`/`PORT` and the service account's token (bound to a "
        "Pod on the node) and CA in /var/run/secrets/kubernetes.io/serviceaccount/, against a real "
        "kube-apiserver with the chart's RBAC and admission policy; measured once its report was "
        "written",
        "kernel": "`proxymedic agent --kubeconfig` with its kernel adapters on this machine, on the "
        "API emulator",
        "modelled": "the agent's code path (`AgentRunner`, sensing, executor) in its own process on "
        "the modelled dataplane with 1,000 connection entries (`python -m bench.agent_process`)",
    }
    for label, data in agent.items():
        if "skipped" in data:
            lines.append(f"| {label} | | | not measured in this run: {data['skipped']} |")
            continue
        problems = "; ".join(data.get("problems") or [])
        note = notes.get(label, label)
        if "kubernetes_imported" in data:
            note += f"; the kubernetes client {'imported' if data['kubernetes_imported'] else 'not imported'}"
        note += f". It reported: {problems}" if problems else ""
        lines.append(
            f"| {label} | {data['rss_mb']:.0f} MB | {data['idle_cpu_percent']:.2f}% over "
            f"{data['seconds']:.0f} s | {note} |"
        )
    lines.append(
        "\nThe machine's kernel has no usable IPVS for the agent (the adapters report it, and the "
        "report's `problems` say so), so the pod and kernel agents' idle figures cover sensing what is "
        "there (sysctls, conntrack, the kube-proxy probe failing to connect) and reporting. All run with "
        "the production sensing interval (10 s). Whether the kubernetes client was imported comes from "
        "the process's own record of its imports (`-X importtime`).\n"
    )
    if fp.get("agent_imports"):
        lines += _agent_imports(fp["agent_imports"])
    return "\n".join(lines)


PROFILE_PARTS = {
    "ipvs_lookup": "The 2 selected virtual servers looked up (netlink)",
    "connection_table_text": "`/proc/net/ip_vs_conn` read as bytes: the kernel's text of every entry",
    "connection_counts_selected": "The agent's connection counts of the 2 selected virtual servers "
    "(that read, and the parse of their lines)",
    "connection_counts_all": "The same for every virtual server (the parse of every line)",
    "conntrack_stats": "conntrack statistics (`/proc`)",
}


def _round_profile(big: dict[str, Any], factor: float) -> list[str]:
    """Where a scoped round's and an intent's CPU goes: each kernel call alone."""
    profile = big.get("round_profile")
    if not profile:
        return []
    scoped, intent = big["sense_scoped"], big["flush_intent"]
    rows = [
        f"| {PROFILE_PARTS.get(part, part)} | {_ms(figures['cpu'])} | {_ms(figures['cpu'] / factor)} |"
        for part, figures in profile.items()
    ]
    text = profile["connection_table_text"]["cpu"]
    reads = intent.get("connection_table_reads")
    per_intent = f"{reads / intent['intents']:.1f}" if reads else "n/a"
    return [
        "Where a scoped round's CPU goes: each of its kernel calls alone, right after the rounds, the "
        "median of as many repetitions (measured apart, under emulation, they need not add up to the "
        "round):\n",
        "| Call | CPU | ÷ factor |",
        "|---|---|---|",
        *rows,
        "",
        f"Reading the connection table's text alone costs {_ms(text)}, "
        f"{text / scoped['cpu']:.0%} of a scoped round ({_ms(scoped['cpu'])}): the kernel has no "
        "per-service view of its connection table, so the selected services' entries cost the text "
        f"of all {big['table']['connections']:,} entries, most of them an unselected service's. A "
        f"flush intent read the table {per_intent} times on average (before the change, then until "
        "the kernel's queued flush had run). This part of the cost grows with the node's connection "
        "entries, whoever's they are, not with the selected services.\n",
    ]


def _kernel(results: dict[str, Any]) -> str:
    kernel = results.get("kernel") or {}
    lines = ["## The agent on a real kernel\n"]
    if "skipped" in kernel or not kernel:
        failure = (results.get("failed") or {}).get("kernel")
        default = (
            f"the kernel section failed ({failure})"
            if failure
            else "the run did not include the kernel section"
        )
        why = kernel.get("skipped", default)
        return "\n".join([*lines, f"Not measured in this run: {why}.\n"])
    lines.append(
        "Measured in the real-kernel VM (QEMU, the Debian 6.1 kernel of the kernel test tier; "
        "software emulation when the machine has no KVM, which makes every figure here several times "
        "what it is on a real node, for ProxyMedic and for the CLI tools alike). One boot runs "
        "`bench/kernel_flush.py`, then `bench/kernel_scale.py`; CPU is this process's user + system "
        "time, every thread included.\n"
    )
    big = kernel.get("scale")
    if big:
        table = big["table"]
        whole, scoped = big["sense_whole"], big["sense_scoped"]
        intent, lookup = big["flush_intent"], big["lookup"]
        factor = emulation_factor(kernel) or float("nan")
        lines += [
            f"### A node with {table['virtual_servers']:,} virtual servers\n",
            f"The node's IPVS table holds {table['virtual_servers']:,} virtual servers (half UDP, half "
            f"TCP) with {table['real_servers']:,} real servers and {table['connections']:,} connection "
            "entries; a policy selects two UDP virtual servers with six real servers each. A sensing "
            "round is the agent's `sense` with its kernel adapters (a stub kube-proxy probe); a flush "
            "intent is the agent's `execute` for one dead backend of a selected virtual server: lookup, "
            "removal, the kernel's queued flush and its verification.\n",
            "The emulation slows Python down by a factor measured in the same run: a sensing round on "
            "stub adapters (the agent's own Python, no kernel call) took "
            f"{_ms(big['python_reference'])} of CPU in the VM and {_ms(kernel['host_python_reference'])} "
            f'on the machine itself, a factor of {factor:.1f}. The column "÷ factor" divides by it: an '
            "estimate of the figure on this machine's CPU without emulation, not a measurement on a "
            "real node (the kernel's own work may scale differently).\n",
            "| Work | CPU | ÷ factor | Wall |",
            "|---|---|---|---|",
            f"| Sensing round, the whole table (no policy lists its virtual servers) | {_ms(whole['cpu'])} "
            f"| {_ms(whole['cpu'] / factor)} | {_ms(whole['wall'])} |",
            f"| Sensing round, the 2 selected virtual servers (`status.sensing`) | {_ms(scoped['cpu'])} "
            f"median, {_ms(scoped['cpu_max'])} max | {_ms(scoped['cpu'] / factor)} | {_ms(scoped['wall'])} |",
            f"| Flush intent ({intent['intents']} intents, {intent['flushed_connections']:,} entries "
            f"flushed) | {_ms(intent['cpu'])} median, {_ms(intent['cpu_max'])} max | "
            f"{_ms(intent['cpu'] / factor)} | {_ms(intent['wall'])} |",
            f"| One virtual server looked up on the agent's open socket | | | "
            f"{lookup['kept_wall'] * 1e6:,.0f} µs |",
            "| The same on a new socket, as every call was made before | | | "
            f"{lookup['new_wall'] * 1e6:,.0f} µs |",
            f"| `ipvsadm -Ln -u VIP:53` | | | {lookup['ipvsadm_wall'] * 1e6:,.0f} µs |",
            "",
            f"The process's RSS after the scoped rounds and the intents: {big['rss_mb']:.0f} MB (the "
            "benchmark process, which imports the agent's modules but not its API client; not the agent "
            "in a pod).\n",
        ]
        lines += _round_profile(big, factor)
    flush = kernel.get("flush") or {}
    if flush:
        lines += [
            "### A dead backend's entries: the adapters against the CLI tools\n",
            "N IPVS connection entries and N conntrack entries spread over 50 backends; one backend's "
            "share is removed by the adapters and, for another backend of the same population, by the "
            "CLI tools (`ipvsadm -e -w 0` + `ipvsadm -d`; `conntrack -D`). The IPVS adapter's socket is "
            "open before it is timed, as the agent's is. Ratio: the tools' time over the adapter's.\n",
            "| N | IPVS calls: adapter / ipvsadm (ratio) | IPVS until no entry left (ratio) | conntrack: "
            "adapter / conntrack -D (ratio) |",
            "|---|---|---|---|",
        ]
        for size, run in sorted(flush.items(), key=lambda item: int(item[0])):
            lines.append(
                f"| {int(size):,} | {_ms(run['ipvs adapter call'])} / {_ms(run['ipvs cli call'])} "
                f"({run['ipvs cli call'] / run['ipvs adapter call']:.2f}) | {_ms(run['ipvs adapter'])} / "
                f"{_ms(run['ipvs cli'])} ({run['ipvs cli'] / run['ipvs adapter']:.2f}) | "
                f"{_ms(run['conntrack adapter'])} / {_ms(run['conntrack cli'])} "
                f"({run['conntrack cli'] / run['conntrack adapter']:.2f}) |"
            )
        lines.append("")
    return "\n".join(lines)


def _shifts() -> str:
    return (
        "## Shifts since the previous published run\n\n"
        "The previous published run (2026-11-29) predates the changes the real-cluster tier called for "
        "(docs/cluster-tier.md). These figures moved since:\n\n"
        "- **DNS queries lost on stalled nodes** (graceful: 30 then, all on the 4.19 nodes; now several "
        "hundred on each kind of stalled node). The operator now gives kube-proxy the policy's "
        "`staleAfter` to program a live backend before its absence counts (above): a stalled node's "
        "restart comes 10 s later here, and its clients lose their queries meanwhile. This is the "
        "price of never restarting a kube-proxy that is merely slow; the healthy and pre-5.9 nodes "
        "lose what they lost before.\n"
        "- **Repair latency at 1,000 and 5,000 nodes** (p99 305 ms and 1.6 s then) is now measured on "
        "another harness: the real kube-apiserver instead of the emulator, the nodes spread over "
        "processes, and each agent with its own intent and policy watches instead of one shared watch "
        "(How the benchmarks run). The old harness served every agent's request in the one process that "
        "also ran every agent; the new one shares this machine's cores between the API server, the "
        "operator and the simulated nodes instead. Since the previous run, too, each agent reads the "
        "Service's EndpointSlices from the API before each flush, so that an intent decided before a "
        "backend came back never removes it (`agent/liveness.py`); the stages of the latency table show "
        "what that read costs at each scale.\n"
        "- **Operator RSS under churn** (152 MB peak on 2026-11-29, 259 MB on 2026-12-02 before the "
        "memory work). `python -m bench.footprint cluster-state` profiled it: an empty set per endpoint, "
        "an object per endpoint for every slice, Kopf's per-object memory for kinds only reacted to, and "
        "copies of addresses and references; docs/benchmarks-notes.md has the sites and their sizes. "
        "The operator now keeps one compact record per slice and shares what it can; what remains, and "
        "why the goal (now 100 MB) is still missed, is in the same notes.\n"
        "- **The agent on a real kernel** is measured now (its section above), against its "
        "goals for a node with 10,000 virtual servers.\n"
    )


def _changes(results: dict[str, Any]) -> str:
    run = _scale_by_nodes(results).get(1000)
    fp = results.get("footprint")
    rss_now = (
        f"this run: {fp['operator']['churn_rss_mb_peak']:.0f} MB peak" if fp else "this run's figures above"
    )
    now = (
        f"this run: p50 {_ms(run['latency']['p50'])}, p99 {_ms(run['latency']['p99'])}"
        if run
        else "this run's figures above"
    )
    rows = [
        (
            "The operator judged **every** node's findings (and recomputed the selected Services' VIPs "
            "for each node) on **every** NodeProxyHealth report, for the anomaly breaker's count: a "
            "rollout at N nodes cost O(N²). py-spy on the operator: 91% of its time in `health_event` → "
            "`policy_nodes`. Now a report re-judges that node only and reuses the other nodes' findings "
            "from their last report or the last sweep (at most one housekeeping interval old); the sweep "
            "still judges every node, and the VIPs are computed once per call (`operator/repairs.py`, "
            "`Cluster.node_selected` in `operator/state.py`).",
            "1,000 nodes: repair latency p50 6,053 ms, p99 6,340 ms, max 6,348 ms; the agents received "
            "the intents 2.6 s and 6.0 s after the EndpointSlice changes",
            "1,000 nodes, same settings: p50 348 ms, p99 508 ms, max 511 ms; intents received after "
            f"330 ms and 115 ms ({now}, with the changes below; the machine is shared)",
        ),
        (
            "Every agent parsed every event of an intent it had already applied (each status update the "
            "operator writes) before finding it applied: `NodeAgent.on_intent` now skips an intent whose "
            "uid it has a result for (`agent/agent.py`). Every agent parsed the same few IP addresses of "
            "each intent with `ipaddress` (about half of the intent's parsing and execution time): the "
            "executor and the models' address validator cache them (`agent/executor.py`, "
            "`api/types.py`).",
            "1,000 simulated agents applying one intent: 0.38 s of CPU (cProfile); repair latency at "
            "1,000 nodes p50 374 ms, p99 570 ms (the previous full run)",
            f"0.21 s; {now}",
        ),
        (
            "Kopf kept a worker task and queue per watched object for 5 s after its last event "
            "(`queueing.idle_timeout`); with 20,000 Services and EndpointSlices listed at start that held "
            "much of the operator's memory. It is 0.5 s now: the handlers store nothing on the objects "
            "(`operator/handlers.py`).",
            "10,000 Services / 100,000 endpoints: RSS 270 MB peak (the previous full run)",
            "235 MB peak (the next full run)",
        ),
        (
            "`proxymedic agent` in a pod imported the kubernetes client only to read its service account "
            "(`load_incluster_config`); `kube/config.py` now reads the service account itself, and imports "
            "the client only for a kubeconfig.",
            "RSS includes the client's share (measured above)",
            "a pod's agent does not import it",
        ),
        (
            "Each NodeProxyHealth report still recomputed the selected Services' VIPs (a walk over every "
            "Service) and the anomaly breaker's count over every node. The VIPs are now cached until a "
            "Service, an EndpointSlice or a policy changes, and the stale-node count is kept per node "
            "between sweeps (`operator/state.py`, `operator/repairs.py`).",
            "5,000 nodes: p50 15,803 ms, p99 16,349 ms, max 16,360 ms; 1,000 nodes: p99 612 ms (the "
            "previous full run)",
            "5,000 nodes: p50 2,250 ms, p99 4,460 ms; 1,000 nodes: p99 495 ms (the next full run)",
        ),
        (
            "Kopf listed each watched kind in one response: the operator parsed 10,000 EndpointSlices and "
            "10,000 Services at once, and its RSS rose from 74 MB to 181 MB within half a second, memory "
            "the process kept. It now lists in pages of 500 (`settings.watching.chunk_size`, client-go's "
            "page size; `operator/handlers.py`), which a real API server serves from one snapshot; the "
            "emulator learnt `limit` and `continue` (docs/emulator.md).",
            "10,000 Services / 100,000 endpoints: RSS 230 MB after the initial sync and at the churn's peak "
            "(the operator's footprint run alone, `bench.footprint.operator_footprint`, a shorter churn); "
            "235 MB in the previous full run",
            rss_now,
        ),
        (
            "At 5,000 nodes the operator fell behind its reports: `Ladder.observe` walked "
            "every node's findings to forget one node's (43% of the operator's samples, py-spy, "
            "`python -m bench.profile_rollout`), and forgot old removals on every report. Findings are "
            "now indexed by node and removals pruned once a minute (`operator/drift.py`). A sweep over "
            "thousands of nodes that each had a step counted the selected nodes again for each step's "
            "guardrail check, and each Event posted walked every Event posted before: the sweep passes "
            "its count to the guardrails, and old Events are forgotten once a minute "
            "(`operator/controller.py`, `kube/events.py`).",
            "5,000 nodes, the rollout: p50 12,850 ms, p99 14,371 ms, the second intent delivered 12.8 s "
            "late (a full run with a faster emulator, since reverted: it changed the timing of the "
            "reliability suite); `python -m bench.operator_flood` with "
            "every node holding a finding: 78% of the operator's samples in `Cluster.selected_nodes`",
            "this run; `Cluster.selected_nodes` under 3% of the samples in the same setup",
        ),
    ]
    lines = [
        "## Changes made for performance\n",
        'The "before" figures were measured on the same machine before each change, with this command '
        "and the same settings (or with cProfile where the row says so); they are not regenerated, the "
        "old code is gone.\n",
        "| Change | Before | After |",
        "|---|---|---|",
    ]
    lines += [f"| {change} | {before} | {after} |" for change, before, after in rows]
    return "\n".join(lines) + "\n"


def _gaps(plan: dict[str, Any]) -> str:
    return """## What the simulation does not capture

- **A real API server.** The emulator is an in-memory Python server in the benchmark's process:
  no etcd, no admission chain beyond schema and CEL validation, no authentication, no priority
  and fairness, no watch cache. A real server's write latency (etcd commits, typically several
  ms) and its fan-out of one intent to thousands of agent watches are not measured; here one
  watch is fanned out in memory.
- **Parallelism of a real cluster.** Thousands of agents run on their own nodes; here they
  share one core with the emulator, so per-node work is serialized and the tail of the latency
  distribution grows with the node count for that reason alone. The operator has its own process
  (and the machine's second core), as in a cluster.
- **Real kernel costs.** Netlink calls, reading `/proc/net/ip_vs_conn` and conntrack deletes
  cost more than the model's dictionaries (bench/kernel_flush.py measures the kernel side in the
  VM), and the kernel's queued flush is modelled as 50 ms.
- **Network.** Everything is on 127.0.0.1: no latency between nodes and the control plane, no
  packet loss, no TLS.
- **kube-proxy.** The simulated kube-proxy reacts to a change at its next tick (100 ms here, 500 ms
  in the scale runs) when its minimum sync period has passed; a real one first receives the change
  over its own watch, so healthy nodes lose few or no queries here, with or without ProxyMedic.
- **Duration.** Runs last seconds, not the 300 s UDP timeout: failures still open at the end are
  reported with the bound the model's entry expiry gives, not waited for.
"""
