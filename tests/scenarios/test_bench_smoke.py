"""The cluster-scale benchmarks at a tiny scale, so that their code cannot rot (not a benchmark)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.measured import NodeKind, scenario
from bench.report import write_all
from bench.rollout import Timing, run
from bench.run_all import machine, steady_rate

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(60)]


async def test_a_tiny_rollout_runs_and_reports(tmp_path: Path) -> None:
    cluster = scenario(
        [NodeKind("healthy", 2)],
        housekeeping=0.5,
        agent_sense_interval=0.5,
        agent_heartbeat=1.0,
        agent_min_write_interval=0.05,
        query_interval=0.1,
    )
    result = await run(cluster, Timing(warm_up=0.5, steady=1.0, surge_wait=0.3, lameduck=0.5, settle=0.5))
    assert result["latency"]["count"] == 4  # 2 nodes x 2 pods replaced
    assert result["dns"]["healthy"]["failed"] == 0
    assert result["rollout_writes"]["writes"] > 0
    result["steady"] = steady_rate(result, 1.0)
    result["rollout_rate"] = 1.0
    result["status_writes_per_node"] = 1.0
    # The same run stands in for the DNS runs: without, with, and a policy variant run only with.
    dns = [
        {**result, "mode": "killed outright", "with_proxymedic": False, "lameduck": 0.0},
        {**result, "mode": "killed outright", "min_observation": "2s", "lameduck": 0.0},
        {**result, "mode": "killed outright, minObservation 1 s", "min_observation": "1s", "lameduck": 0.0},
    ]
    write_all(
        {
            "machine": machine(),
            "plan": {},
            "log": ["x"],
            "seconds": 1.0,
            "command": "c",
            "scale": [result],
            "dns": dns,
        },
        tmp_path,
    )
    assert (tmp_path / "benchmarks" / "repair_latency.png").stat().st_size > 0
    assert (tmp_path / "benchmarks" / "dns_failures.png").stat().st_size > 0
    doc = (tmp_path / "benchmarks.md").read_text()
    assert "Repair latency" in doc
    assert "### killed outright, minObservation 1 s" in doc
    assert "The policy's minimum observation is 1s instead of 2 s" in doc


def test_the_kernel_section_renders_what_the_vm_wrote_and_a_skip() -> None:
    from bench.doc import _goals, _kernel, summary

    scale = {
        "table": {
            "virtual_servers": 10002,
            "real_servers": 30012,
            "connections": 22000,
            "build_seconds": 30.0,
        },
        "sense_whole": {"cpu": 500.0, "wall": 500.0, "cpu_max": 500.0},
        "sense_scoped": {"cpu": 0.4, "wall": 0.4, "cpu_max": 0.5},
        "flush_intent": {
            "cpu": 0.2,
            "cpu_max": 0.3,
            "wall": 0.4,
            "intents": 6,
            "flushed_connections": 1200,
            "connection_table_reads": 18,
        },
        "round_profile": {
            "ipvs_lookup": {"cpu": 0.01, "wall": 0.01, "cpu_max": 0.01},
            "connection_table_text": {"cpu": 0.15, "wall": 0.15, "cpu_max": 0.15},
            "connection_counts_selected": {"cpu": 0.3, "wall": 0.3, "cpu_max": 0.3},
            "connection_counts_all": {"cpu": 0.6, "wall": 0.6, "cpu_max": 0.6},
            "conntrack_stats": {"cpu": 0.001, "wall": 0.001, "cpu_max": 0.001},
        },
        "lookup": {"kept_wall": 0.07, "new_wall": 0.13, "ipvsadm_wall": 0.19},
        "rss_mb": 60.0,
        "python_reference": 0.2,
    }
    run = {
        "ipvs adapter call": 0.1,
        "ipvs adapter": 0.4,
        "ipvs cli call": 0.4,
        "ipvs cli": 0.8,
        "conntrack adapter": 0.4,
        "conntrack cli": 0.6,
    }
    measured = {"kernel": {"flush": {"10000": run}, "scale": scale, "host_python_reference": 0.01}}
    text = _kernel(measured)
    assert "a factor of 20.0" in text
    assert "| Sensing round, the 2 selected virtual servers (`status.sensing`) | 400 ms median" in text
    assert "| 10,000 | 100 ms / 400 ms (4.00)" in text
    goals = _goals(measured)
    assert "Reading the connection table's text alone costs 150 ms, 37% of a scoped round (400 ms)" in text
    assert "A flush intent read the table 3.0 times on average" in text
    assert (
        "≤ 50 ms CPU per sensing round, 10,002 virtual servers, 2 selected | 400 ms as measured, under "
        "emulation: **missed**; ÷ the emulation factor measured in the same run (20.0) ≈ 20 ms, within "
        "the goal (an estimate" in goals
    )
    assert "| ≤ 100 ms CPU per flush intent on that node | at most 300 ms as measured" in goals
    assert "IPVS flush at least as fast as ipvsadm (10,000 entries) | ratio 4.00: met" in goals
    assert any("≈ 20 ms" in row for row in summary(measured))
    skipped = {"kernel": {"skipped": "no QEMU"}}
    assert "Not measured in this run: no QEMU." in _kernel(skipped)
    assert "not measured in this run: no QEMU" in _goals(skipped)


def _footprint(pod: dict[str, Any] | None) -> dict[str, Any]:
    operator = {
        "services": 10_000,
        "endpoints": 100_000,
        "udp_services_selected": 1_000,
        "nodes": 1_000,
        "synced_after": 40.0,
        "idle_rss_mb": 120.0,
        "idle_cpu_percent": 1.0,
        "churn_per_second": 20.0,
        "churn_changes": 1_000,
        "churn_seconds": 60.0,
        "churn_rss_mb_peak": 130.0,
        "churn_rss_mb_end": 125.0,
        "churn_cpu_percent": 80.0,
        "intents_created": 10,
    }
    kernel = {"rss_mb": 71.0, "idle_cpu_percent": 0.1, "seconds": 30.0, "kubernetes_imported": True}
    modelled = {"rss_mb": 60.0, "idle_cpu_percent": 0.1, "seconds": 30.0}
    agent = {"kernel": kernel, "modelled": modelled} | ({"pod": pod} if pod is not None else {})
    return {"footprint": {"operator": operator, "agent": agent, "kubernetes_client_mb": 10.7}}


def test_the_agent_rss_goal_is_judged_on_the_pod_run_with_the_kubeconfig_run_beside_it() -> None:
    from bench.doc import _footprint as footprint_section
    from bench.doc import _goals, summary

    pod = {"rss_mb": 48.0, "idle_cpu_percent": 0.05, "seconds": 30.0, "kubernetes_imported": False}
    measured = _footprint(pod)
    assert "| Agent RSS ≤ 50 MB, as in a pod | 48 MB (service-account token" in _goals(measured)
    assert "the kubernetes client not imported): met; 71 MB with a kubeconfig |" in _goals(measured)
    assert any("| 48 MB (71 MB with `--kubeconfig`) / 0.05% | ≤ 50 MB |" in row for row in summary(measured))
    section = footprint_section(measured, {})
    assert "| pod | 48 MB | 0.05% over 30 s | `proxymedic agent` as a DaemonSet pod runs it" in section
    assert "the kubernetes client imported" in section  # the kubeconfig run's
    assert "Where the agent's memory goes" not in section  # a run from before the profile

    groups = [{"name": f"package-{i}", "mb": 10.0 - i, "modules": 10} for i in range(10)]
    measured["footprint"]["agent_imports"] = {
        "command": "proxymedic agent --node-name profile --metrics-port 0",
        "python_mb": 9.3,
        "imports_mb": 41.7,
        "outside_imports_mb": 0.3,
        "total_mb": 51.3,
        "groups": groups,
    }
    section = footprint_section(measured, {})
    assert "#### Where the agent's memory goes" in section
    assert "| Python at start | 9.3 MB | |" in section
    assert "| package-0 | 10.0 MB | 10 |" in section
    assert "| package-7 | 3.0 MB | 10 |" in section
    assert "package-8" not in section
    assert "| 2 more | 3.0 MB | 20 |" in section
    assert "| **in all** | **51.3 MB** | |" in section

    skipped = _footprint({"skipped": "no etcd on PATH"})
    assert "not measured in a pod: no etcd on PATH): **missed** |" in _goals(skipped)
    assert "| pod | | | not measured in this run: no etcd on PATH |" in footprint_section(skipped, {})
    assert "not measured in a pod): **missed** |" in _goals(_footprint(None))  # a run from before


async def test_a_failing_section_is_reported_and_the_others_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.run_all as run_all
    from bench.doc import render

    async def kernel(plan: Any, log: list[str]) -> dict[str, Any]:
        raise RuntimeError("the VM did not boot")

    async def operator(plan: Any, log: list[str]) -> list[dict[str, Any]]:
        return []

    monkeypatch.setattr(run_all, "kernel_section", kernel)
    monkeypatch.setattr(run_all, "operator_benchmarks", operator)
    results = await run_all.main_async(run_all.QUICK, {"operator", "kernel"}, previous=None)
    assert results["operator"] == []
    assert "kernel" not in results
    assert results["failed"] == {"kernel": "RuntimeError: the VM did not boot"}
    assert set(results["section_dates"]) == {"operator"}
    results["command"] = "python -m bench --only operator,kernel"
    doc = render(results, plots={})
    assert "Sections that failed in this run, so not measured:** kernel (RuntimeError" in doc
    assert "Not measured in this run: the kernel section failed (RuntimeError: the VM did not boot)." in doc


async def test_the_kernel_section_runs_inside_the_benchmarks_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`python -m bench` awaits the kernel section in its loop: the host's reference figure, which
    runs event loops of its own, must not need the loop to be free. The VM is faked (it says it
    cannot run, as on a machine without QEMU)."""
    import asyncio

    import bench.kernel_vm as kernel_vm

    class NoVM:
        def __init__(self) -> None:
            self.stdout = asyncio.StreamReader()
            self.stdout.feed_eof()

        async def wait(self) -> int:
            return kernel_vm.SKIPPED

    async def no_vm(*args: str, env: dict[str, str], **_: Any) -> NoVM:
        await asyncio.to_thread(Path(env["TIER_SKIP_REASON"]).write_text, "no QEMU here\n")
        return NoVM()

    monkeypatch.setattr(asyncio, "create_subprocess_exec", no_vm)
    assert await kernel_vm.kernel_benchmarks("10", 10, 30, []) == {"skipped": "no QEMU here"}
