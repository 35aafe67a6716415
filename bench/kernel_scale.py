"""The agent's cost on a big node: a sensing round and a flush intent, against the real IPVS.

Runs inside the real-kernel VM (``scripts/vm/run-kernel-tests.sh --bench``, after
bench/kernel_flush.py in the same boot), as root. It builds a node namespace whose IPVS table
holds ``--services`` virtual servers (half UDP on port 53, half TCP on port 80) with
``--real-servers`` real servers spread over them, and two more UDP virtual servers that a policy
selects, with six real servers each. Clients then open ``--connections`` UDP flows to one
unselected virtual server and a tenth of that to each selected one.

Measured, as CPU seconds of this process (user + system, every thread) and wall seconds:

* a sensing round as the agent runs it without a scope (it dumps every virtual server with its
  real servers and the whole connection table, and keeps the UDP ones), and with the two selected
  virtual servers as its scope;
* a flush intent for a dead backend of a selected virtual server (``execute``: the lookup, the
  removal of its real server, the kernel's flush and its verification), six of them;
* one virtual server's lookup on the adapter's long-lived socket, against a new adapter (and so a
  new socket) per lookup, as every call did before;
* the process's RSS at the end.

The kube-proxy probe is a stub that answers at once: its cost does not depend on the table.
Figures go to stdout and, as JSON, to $KERNEL_REPORT_DIR/kernel_scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.kernel_flush import send_flows
from proxymedic.agent.executor import execute
from proxymedic.agent.liveness import InUse
from proxymedic.agent.node import NodeDataplane, kernel_dataplane
from proxymedic.agent.sensing import LocalFindings, SenseSettings, sense
from proxymedic.api.intent import RemediationIntent
from proxymedic.dataplane.ipvs import NetlinkIPVS
from proxymedic.dataplane.kubeproxy import KubeProxyObservation
from proxymedic.dataplane.types import (
    ConnectionCounts,
    ConntrackStats,
    Endpoint,
    IPVSTimeouts,
    L4Protocol,
    RealServer,
    ServiceKey,
    VirtualService,
)
from tests.kernel.lab import CLIENT, NODE, Lab, ip_batch, run, sysctl_write
from tests.unit.factories import intent

SELECTED = (ipaddress.IPv4Address("10.96.0.10"), ipaddress.IPv4Address("10.96.0.11"))
SELECTED_KEYS = frozenset(ServiceKey(L4Protocol.UDP, vip, 53) for vip in SELECTED)
BUSY = ipaddress.IPv4Address("10.98.0.1")
"""The unselected UDP virtual server that holds most connection entries."""
SELECTED_BACKENDS = 6


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def vip(i: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(ipaddress.IPv4Address("10.98.0.1")) + i)


def real_server(i: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(ipaddress.IPv4Address("10.2.0.1")) + i)


def selected_backend(s: int, i: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(f"10.1.{s}.{10 + i}")


def build(services: int, real_servers: int, connections: int) -> dict[str, float]:
    run("ipvsadm", "-C")
    sysctl_write("net.ipv4.vs.expire_nodest_conn", 1)
    lines: list[str] = []
    per = max(1, real_servers // services)
    for i in range(services):
        flag, port = ("-u", 53) if i % 2 == 0 else ("-t", 80)
        lines.append(f"-A {flag} {vip(i)}:{port} -s rr")
        lines.extend(
            f"-a {flag} {vip(i)}:{port} -r {real_server(i * per + j)}:{port} -m -w 1" for j in range(per)
        )
    for s, address in enumerate(SELECTED):
        lines.append(f"-A -u {address}:53 -s rr")
        lines.extend(
            f"-a -u {address}:53 -r {selected_backend(s, i)}:53 -m -w 1" for i in range(SELECTED_BACKENDS)
        )
    start = time.monotonic()
    subprocess.run(["ipvsadm", "-R"], input="\n".join(lines) + "\n", text=True, check=True)
    built = time.monotonic() - start
    flows = {"busy": send_flows(connections, BUSY)}
    for address in SELECTED:
        flows[str(address)] = send_flows(max(SELECTED_BACKENDS * 10, connections // 10), address)
    time.sleep(0.5)
    listed = subprocess.run(["ipvsadm", "-Ln"], capture_output=True, text=True, check=True).stdout
    table = {
        "virtual_servers": sum(1 for line in listed.splitlines() if line.startswith(("UDP", "TCP"))),
        "real_servers": sum(
            1 for line in listed.splitlines() if line.strip().startswith("->") and ":" in line
        )
        - 1,  # the header line "-> RemoteAddress:Port ..."
        "connections": Path("/proc/net/ip_vs_conn").read_bytes().count(b"\n") - 1,
        "build_seconds": built,
    }
    print(
        f"  table: {table['virtual_servers']} virtual servers, {table['real_servers']} real servers, "
        f"{table['connections']} connection entries (ipvsadm -R took {built:.1f} s)"
    )
    return table


def measured(fn: Callable[[], Any], repeat: int, warm_up: bool = True) -> dict[str, float]:
    """Median CPU and wall seconds of ``repeat`` calls (after one warm-up call unless told not to)."""
    if warm_up:
        fn()
    cpus, walls = [], []
    for _ in range(repeat):
        c, w = cpu(), time.monotonic()
        fn()
        cpus.append(cpu() - c)
        walls.append(time.monotonic() - w)
    return {"cpu": statistics.median(cpus), "wall": statistics.median(walls), "cpu_max": max(cpus)}


def dataplane() -> NodeDataplane:
    dp = kernel_dataplane()

    async def probe() -> KubeProxyObservation:
        return KubeProxyObservation(observed_at=time.time())

    dp.probe = probe
    return dp


class _StubKernel:
    """Answers every adapter call at once, the same on any machine: what is left of a round is Python."""

    def get_timeouts(self) -> IPVSTimeouts:
        return IPVSTimeouts(900, 120, 300)

    def list_services(self) -> list[VirtualService]:
        return self.get_services(SELECTED_KEYS)

    def get_services(self, keys: Collection[ServiceKey]) -> list[VirtualService]:
        return [
            VirtualService(
                key,
                "rr",
                tuple(RealServer(Endpoint(selected_backend(s, i), 53), 1) for i in range(SELECTED_BACKENDS)),
            )
            for s, key in enumerate(sorted(keys, key=ServiceKey.sort_key))
        ]

    def connection_counts(self, services: Collection[ServiceKey] | None = None) -> list[ConnectionCounts]:
        return []

    def stats(self) -> ConntrackStats:
        return ConntrackStats(count=10, max=262144)

    def read(self, name: str) -> int:
        return 1


def python_reference(rounds: int = 200) -> float:
    """CPU seconds per sensing round on stub adapters: pure Python, the agent's own code. Run in the
    VM and on the machine itself, its ratio is how much the emulation slows the agent's Python."""
    stub = _StubKernel()

    async def probe() -> KubeProxyObservation:
        return KubeProxyObservation(observed_at=time.time())

    dp = NodeDataplane(ipvs=stub, connections=stub, conntrack=stub, sysctls=stub, probe=probe)  # type: ignore[arg-type]
    settings = SenseSettings(virtual_servers=SELECTED_KEYS)

    async def many() -> None:
        for _ in range(rounds):
            await sense(dp, settings, LocalFindings(), "bench")

    asyncio.run(many())  # warm-up: imports, caches
    start = cpu()
    asyncio.run(many())
    return (cpu() - start) / rounds


def sense_round(dp: NodeDataplane, scope: frozenset[ServiceKey] | None) -> Callable[[], Any]:
    settings = SenseSettings(virtual_servers=scope)

    def one() -> Any:
        status = asyncio.run(sense(dp, settings, LocalFindings(), "bench"))
        assert not status.problems, status.problems
        return status

    return one


def round_profile(dp: NodeDataplane, repeat: int) -> dict[str, dict[str, float]]:
    """Each kernel call of a scoped round alone (median CPU and wall of ``repeat``): where its time
    goes. The connection table has no per-service interface: reading it costs the kernel's text of
    every entry, whoever's it is, then ProxyMedic's parse of the selected services' lines."""
    assert dp.ipvs is not None
    assert dp.connections is not None
    assert dp.conntrack is not None
    ipvs, connections, conntrack = dp.ipvs, dp.connections, dp.conntrack
    keys = sorted(SELECTED_KEYS, key=ServiceKey.sort_key)
    return {
        "ipvs_lookup": measured(lambda: ipvs.get_services(keys), repeat),
        "connection_table_text": measured(lambda: Path("/proc/net/ip_vs_conn").read_bytes(), repeat),
        "connection_counts_selected": measured(lambda: connections.connection_counts(SELECTED_KEYS), repeat),
        "connection_counts_all": measured(lambda: connections.connection_counts(None), repeat),
        "conntrack_stats": measured(conntrack.stats, repeat),
    }


def flush_intents(dp: NodeDataplane) -> dict[str, float]:
    """Flush three dead backends of each selected virtual server, one intent each."""
    assert dp.connections is not None
    table = dp.connections
    reads = 0

    def counted(services: Collection[ServiceKey] | None = None) -> list[ConnectionCounts]:
        nonlocal reads
        reads += 1
        return type(table).connection_counts(table, services)

    table.connection_counts = counted  # type: ignore[method-assign]
    cpus, walls, flushed = [], [], 0
    for s, address in enumerate(SELECTED):
        for i in range(3):
            dead = selected_backend(s, i)
            live = [str(selected_backend(s, j)) for j in range(i + 1, SELECTED_BACKENDS)]
            raw = intent(
                deadBackends=[str(dead)],
                liveBackends=live,
                steps=["RemoveRealServers", "FlushConnections"],
                decidedAt="2026-01-01T00:00:00Z",
                expiresAt="2099-01-01T00:00:00Z",
            )
            raw["spec"]["service"]["clusterIPs"] = [str(address)]
            parsed = RemediationIntent.model_validate(raw)
            c, w = cpu(), time.monotonic()
            result = asyncio.run(execute(parsed, dp, InUse(frozenset(live))))
            cpus.append(cpu() - c)
            walls.append(time.monotonic() - w)
            assert result.outcome == "Applied", result.message
            assert result.removed_real_servers == 1, result.message
            flushed += result.flushed_connections
    del table.connection_counts
    return {
        "cpu": statistics.median(cpus),
        "cpu_max": max(cpus),
        "wall": statistics.median(walls),
        "intents": len(cpus),
        "flushed_connections": flushed,
        "connection_table_reads": reads,
    }


def socket_reuse(repeat: int) -> dict[str, float]:
    key = next(iter(SELECTED_KEYS))
    warm = NetlinkIPVS()
    kept = measured(lambda: warm.get_services([key]), repeat)

    def fresh() -> None:
        adapter = NetlinkIPVS()
        try:
            adapter.get_services([key])
        finally:
            adapter.close()

    new = measured(fresh, repeat)
    cli = measured(
        lambda: subprocess.run(["ipvsadm", "-Ln", "-u", f"{key.vip}:53"], capture_output=True, check=True),
        max(5, repeat // 10),
    )
    warm.close()
    return {"kept_wall": kept["wall"], "new_wall": new["wall"], "ipvsadm_wall": cli["wall"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=10_000)
    ap.add_argument("--real-servers", type=int, default=30_000)
    ap.add_argument("--connections", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--whole-rounds", type=int, default=1, help="rounds that dump the whole table")
    args, _ = ap.parse_known_args()  # the VM passes one argument list to both kernel benchmarks
    if os.geteuid() != 0 or not Path("/proc/net/ip_vs").exists():
        print(
            "kernel_scale: needs root and IPVS: run scripts/vm/run-kernel-tests.sh --bench", file=sys.stderr
        )
        return 77
    print(
        f"== a node with {args.services} virtual servers and {args.real_servers} real servers, "
        f"{len(SELECTED_KEYS)} selected"
    )
    lab = Lab.build()
    try:
        ip_batch([f"addr add 10.0.{100 + j}.{2 + h}/32 dev eth0" for j in range(3) for h in (0, 1)], CLIENT)
        ip_batch(
            [
                # VIPs must be local addresses for IPVS to see their packets, as on kube-ipvs0.
                *(f"addr add {address}/32 dev pmk-vip" for address in (*SELECTED[1:], BUSY)),
                "route add 10.1.0.0/16 dev pmk-b1n",
                "route add 10.2.0.0/16 dev pmk-b1n",
                "route add 10.0.0.0/8 dev pmk-cn",
            ],
            NODE,
        )
        lab.enter()
        sysctl_write("net.netfilter.nf_conntrack_udp_timeout", 3600)
        table = build(args.services, args.real_servers, args.connections)
        dp = dataplane()
        assert dp.ipvs is not None
        dp.ipvs.get_timeouts()  # the agent's socket is open after its first round
        scoped = measured(sense_round(dp, SELECTED_KEYS), args.repeat)
        profile = round_profile(dp, args.repeat)
        reported = sense_round(dp, SELECTED_KEYS)()
        assert {(vs.vip, vs.port) for vs in reported.virtual_servers} == {(str(v), 53) for v in SELECTED}
        flush = flush_intents(dp)
        sockets = socket_reuse(args.repeat * 20)
        rss = rss_mb()  # before the whole-table round, whose garbage a Python process keeps
        reference = python_reference()
        # A whole-table round takes minutes under emulation: one by default, nothing left to warm up.
        whole = measured(sense_round(dp, None), args.whole_rounds, warm_up=False)
    finally:
        lab.close()
    results = {
        "table": table,
        "sense_whole": whole,
        "sense_scoped": scoped,
        "round_profile": profile,
        "flush_intent": flush,
        "lookup": sockets,
        "rss_mb": rss,
        "python_reference": reference,
    }
    print(
        f"  sensing round, whole table: {whole['cpu'] * 1000:.0f} ms CPU "
        f"({whole['wall'] * 1000:.0f} ms wall)\n"
        f"  sensing round, {len(SELECTED_KEYS)} selected: {scoped['cpu'] * 1000:.1f} ms CPU "
        f"({scoped['wall'] * 1000:.1f} ms wall)\n"
        f"  flush intent: {flush['cpu'] * 1000:.1f} ms CPU median, {flush['cpu_max'] * 1000:.1f} ms max "
        f"({flush['wall'] * 1000:.0f} ms wall, the kernel's flush included; "
        f"{flush['flushed_connections']} entries in {flush['intents']} intents)\n"
        f"  one lookup: kept socket {sockets['kept_wall'] * 1e6:.0f} µs, new socket "
        f"{sockets['new_wall'] * 1e6:.0f} µs, ipvsadm -Ln {sockets['ipvsadm_wall'] * 1e6:.0f} µs\n"
        f"  RSS {rss:.0f} MB; a sensing round on stub adapters (pure Python): {reference * 1000:.1f} ms CPU\n"
        "  a scoped round's parts, CPU: "
        + ", ".join(f"{part} {figures['cpu'] * 1000:.1f} ms" for part, figures in profile.items())
        + f"; connection table reads in the intents: {flush['connection_table_reads']}"
    )
    out = Path(os.environ.get("KERNEL_REPORT_DIR", ".")) / "kernel_scale.json"
    out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
