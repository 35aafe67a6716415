"""The operator's part of the repair latency, without simulated agents: from an EndpointSlice
change to the RemediationIntent the operator creates, on a quiet control plane and while every
node's report arrives (what follows each rollout step at scale: every node writes its result).

In the rollout benchmark the emulator and thousands of simulated agents share one process, which
saturates at 5,000 nodes; here the reports are written straight into the emulator's store, so the
figure is the operator's own (a real ``proxymedic operator`` process, its watches over HTTP).

Run: .venv/bin/python -m bench.operator_flood [--nodes 1000 5000] [--changes 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.footprint import cpu_seconds
from bench.measured import PRODUCTION_POLICY
from proxymedic.api.crd import KINDS, build_crd
from proxymedic.emulator.runner import serve
from proxymedic.emulator.selectors import Selection
from proxymedic.emulator.server import KubernetesApiEmulator
from proxymedic.operator.handlers import OperatorOptions
from proxymedic.sim.coredns import (
    DNS_NAMESPACE,
    DNS_VIP,
    SLICE_NAME,
    DnsPods,
    dns_service,
    kube_proxy_pod,
)
from proxymedic.sim.operators import OperatorProcess

MERGE_PATCH = "application/merge-patch+json"
FLOOD_SECONDS = 2.5
"""Every node reports once within this time, evenly paced."""


def _status(round_: int, real_servers: list[str]) -> dict[str, Any]:
    return {
        "status": {
            "observedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "agentVersion": "bench",
            "proxyMode": "ipvs",
            "kubeProxy": {"freshness": "Fresh", "healthz": "Healthy"},
            "virtualServers": [
                {
                    "vip": DNS_VIP,
                    "port": 53,
                    "protocol": "UDP",
                    "scheduler": "rr",
                    "realServers": [
                        {
                            "ip": ip,
                            "port": 53,
                            "weight": 1,
                            "activeConnections": 0,
                            "inactiveConnections": round_ % 5,
                        }
                        for ip in real_servers
                    ],
                    "orphanedConnections": [],
                }
            ],
        }
    }


class _Setup:
    def __init__(self, emulator: KubernetesApiEmulator, nodes: int, changes: int) -> None:
        self.store = emulator.store
        self.healths = emulator.spec("proxymedic.io/v1alpha1", "nodeproxyhealths")
        self.intents = emulator.spec("proxymedic.io/v1alpha1", "remediationintents")
        self.slices = emulator.spec("discovery.k8s.io/v1", "endpointslices")
        self.policies = emulator.spec("proxymedic.io/v1alpha1", "proxyhealthpolicies")
        self.names = [f"node-{i:05d}" for i in range(nodes)]
        # One pod more than the changes: each change takes one pod out of use.
        self.pods = DnsPods({f"10.244.200.{i + 10}": "ready" for i in range(2 * changes + 1)})
        for name in self.names:
            self.store.create(emulator.spec("v1", "nodes"), None, {"metadata": {"name": name}})
            self.store.create(emulator.spec("v1", "pods"), "kube-system", kube_proxy_pod(name))
            self.store.create(self.healths, None, {"metadata": {"name": name}, "spec": {"nodeName": name}})
            self.report(name, 0)
        self.store.create(emulator.spec("v1", "services"), DNS_NAMESPACE, dns_service())
        self.store.create(self.slices, DNS_NAMESPACE, self.pods.endpoint_slice())
        # The policy's default guardrails, as in the scale runs (the demo's 2 s minimum observation
        # would have the operator remove, node by node, real servers that reports list for a moment).
        self.store.create(self.policies, None, {"metadata": {"name": "coredns"}, "spec": PRODUCTION_POLICY})

    def report(self, node: str, round_: int, leaving: str | None = None) -> None:
        """The node's report: the pods in use as real servers, less the one about to leave (its
        kube-proxy and agent have removed it by the time the node reports after the change; a
        report listing it before the change would look stale afterwards, as no node reports
        again here, and the operator would rightly start removing it everywhere)."""
        serving = sorted(self.pods.in_use() - {leaving})
        self.store.patch(
            self.healths, None, node, _status(round_, serving), MERGE_PATCH, subresource="status"
        )

    def flushed(self, ip: str) -> bool:
        """Whether an intent to flush ``ip`` exists (other intents, for sysctls say, do not count)."""
        return any(
            ip in (obj.get("spec") or {}).get("deadBackends", ())
            for obj in self.store.select(self.intents, Selection(namespace=None))
        )

    def policy_synced(self) -> bool:
        return bool((self.store.get(self.policies, None, "coredns").get("status") or {}).get("conditions"))

    def take_out_of_use(self) -> tuple[str, float]:
        ip = next(ip for ip, state in self.pods.items() if state == "ready")
        self.pods[ip] = "terminating"
        self.store.patch(
            self.slices, DNS_NAMESPACE, SLICE_NAME, {"endpoints": self.pods.endpoints()}, MERGE_PATCH
        )
        return ip, time.monotonic()


async def _until_intent(setup: _Setup, change: tuple[str, float], within: float = 30.0) -> float:
    ip, changed_at = change
    while not setup.flushed(ip):
        if time.monotonic() - changed_at > within:
            return float("nan")
        await asyncio.sleep(0.002)
    return time.monotonic() - changed_at


async def _flood(setup: _Setup, round_: int, change_at_share: float = 0.5) -> tuple[float, float]:
    """Every node reports once over FLOOD_SECONDS; the slice changes when ``change_at_share`` of
    them have. Returns the intent's latency and the reports written per second."""
    names = setup.names
    batches = 50
    per_batch = -(-len(names) // batches)
    pause = FLOOD_SECONDS / batches
    seen: asyncio.Future[float] | None = None
    leaving = next(ip for ip, state in setup.pods.items() if state == "ready")
    started = time.monotonic()
    for offset in range(0, len(names), per_batch):
        batch_started = time.monotonic()
        for name in names[offset : offset + per_batch]:
            setup.report(name, round_, leaving)
        if seen is None and offset + per_batch >= len(names) * change_at_share:
            seen = asyncio.ensure_future(_until_intent(setup, setup.take_out_of_use()))
        await asyncio.sleep(max(0.0, pause - (time.monotonic() - batch_started)))
    rate = len(names) / (time.monotonic() - started)
    assert seen is not None
    return await seen, rate


async def measure(nodes: int, changes: int = 3) -> dict[str, Any]:
    emulator = KubernetesApiEmulator(keep_requests=False, history_size=10 * nodes + 1000)
    async with serve(emulator):
        for info in KINDS:
            emulator.register_crd(build_crd(info))
        setup = _Setup(emulator, nodes, changes)
        workdir = Path(tempfile.mkdtemp(prefix="proxymedic-bench-"))
        options = OperatorOptions(standalone=True, housekeeping_interval=5.0)
        operator = OperatorProcess(str(emulator.url).rstrip("/"), workdir, options)
        operator.start()
        try:
            async with asyncio.timeout(300):
                while True:  # the operator has listed everything once it writes the policy's status
                    if setup.policy_synced():
                        break
                    await asyncio.sleep(0.2)
            await asyncio.sleep(3.0)  # the initial listing's events handled
            quiet: list[float] = []
            flooded: list[float] = []
            rates: list[float] = []
            cpu: list[float] = []
            for round_ in range(1, changes + 1):
                quiet.append(await _until_intent(setup, setup.take_out_of_use()))
                await asyncio.sleep(1.0)
                cpu_before, at = cpu_seconds(operator.pid), time.monotonic()
                latency, rate = await _flood(setup, round_)
                cpu.append(100 * (cpu_seconds(operator.pid) - cpu_before) / (time.monotonic() - at))
                flooded.append(latency)
                rates.append(rate)
                await asyncio.sleep(3.0)  # the flood's reports handled before the next quiet change
        finally:
            operator.stop()
    return {
        "nodes": nodes,
        "changes": changes,
        "flood_seconds": FLOOD_SECONDS,
        "quiet": quiet,
        "flooded": flooded,
        "reports_per_second": statistics.mean(rates),
        "operator_cpu_percent_in_flood": statistics.mean(cpu),
    }


def describe(result: dict[str, Any]) -> str:
    def ms(values: list[float]) -> str:
        return ", ".join(f"{1000 * v:.0f}" for v in values) + " ms"

    return (
        f"{result['nodes']} nodes: slice change to intent, quiet: {ms(result['quiet'])}; while every node "
        f"reports ({result['reports_per_second']:.0f} reports/s, operator CPU "
        f"{result['operator_cpu_percent_in_flood']:.0f}%): {ms(result['flooded'])}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--changes", type=int, default=3)
    args = parser.parse_args()
    for nodes in args.nodes:
        print(describe(asyncio.run(measure(nodes, args.changes))))


if __name__ == "__main__":
    main()
