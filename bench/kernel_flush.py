"""Flush everything that belongs to one dead backend: the adapters vs the CLI tools.

Runs inside the real-kernel VM (``scripts/vm/run-kernel-tests.sh --bench [--sizes 10000,100000]``,
followed there by bench/kernel_scale.py),
as root. For each size N it builds a node namespace with

* one IPVS UDP service (VIP 10.96.0.10:53, rr) with 50 real servers and N connection
  entries spread evenly over them (one raw UDP packet per client source address/port), and
* N nf_conntrack UDP entries to a second VIP (10.96.0.20:53) DNAT'ed by an nftables
  ``numgen`` map to the same 50 backends (created by the same kind of raw packets),

then removes one dead backend's share (N/50) twice: once through the adapters
(``NetlinkIPVS.flush_dead_real_server`` with expire_nodest_conn=1, and
``NetlinkConntrack.delete_udp_entries``), once with the CLI tools doing the same job
(``ipvsadm -a -w 0`` + ``ipvsadm -d``, and ``conntrack -D --orig-dst --orig-port-dst --reply-src``),
each on a different backend of the same population. Times are wall-clock from the start of
the call until no entry of that backend is left, printed with the ratio, and written as JSON to
$KERNEL_REPORT_DIR/kernel_flush.json. The IPVS adapter has its socket open before it is timed, as
the agent's long-lived one is.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxymedic.dataplane.conntrack import NetlinkConntrack
from proxymedic.dataplane.ipvs import NetlinkIPVS
from proxymedic.dataplane.types import Endpoint, L4Protocol, ServiceKey
from tests.kernel.lab import CLIENT, NODE, Lab, in_netns, ip_batch, run, sysctl_write

VIP_IPVS = ipaddress.IPv4Address("10.96.0.10")
VIP_CT = ipaddress.IPv4Address("10.96.0.20")
N_BACKENDS = 50
SVC = ServiceKey(L4Protocol.UDP, VIP_IPVS, 53)


def backend(i: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(f"10.1.{i // 200}.{i % 200 + 10}")


def send_flows(n: int, vip: ipaddress.IPv4Address) -> float:
    """n one-packet UDP flows to vip:53 from distinct (source IP, port) pairs; returns seconds."""
    with in_netns(CLIENT):
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    start = time.monotonic()
    try:
        udp_tmpl = struct.Struct("!HHHH")
        ip_tmpl = struct.Struct("!BBHHHBBH4s4s")
        dst = vip.packed
        for k in range(n):
            src = ipaddress.IPv4Address(f"10.0.{100 + k // 50000}.{2 + (k // 25000) % 2}").packed
            sport = 10000 + k % 25000
            udp = udp_tmpl.pack(sport, 53, 9, 0) + b"q"
            hdr = ip_tmpl.pack(0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0, src, dst)
            raw.sendto(hdr + udp, (str(vip), 0))
    finally:
        raw.close()
    return time.monotonic() - start


def ipvs_conns_to(dest: ipaddress.IPv4Address) -> int:
    needle = f"{int(dest):08X} 0035"
    return Path("/proc/net/ip_vs_conn").read_text().count(needle)


def ct_count() -> int:
    return int(Path("/proc/sys/net/netfilter/nf_conntrack_count").read_text())


def build(lab: Lab, n: int) -> None:
    run("ipvsadm", "-C")
    run("conntrack", "-F", check=False)
    sysctl_write("net.ipv4.vs.expire_nodest_conn", 0)
    run("ipvsadm", "-A", "-u", f"{VIP_IPVS}:53", "-s", "rr")
    batch = [f"-a -u {VIP_IPVS}:53 -r {backend(i)}:53 -m -w 1" for i in range(N_BACKENDS)]
    subprocess.run(["ipvsadm", "-R"], input="\n".join(batch) + "\n", text=True, check=True)
    mapping = ", ".join(f"{i} : {backend(i)}" for i in range(N_BACKENDS))
    nft = (
        "table ip pmkb {\n chain pre {\n  type nat hook prerouting priority -100; policy accept;\n"
        f"  ip daddr {VIP_CT} udp dport 53 dnat to numgen inc mod {N_BACKENDS} map {{ {mapping} }}\n"
        " }\n}\n"
    )
    run("nft", "delete", "table", "ip", "pmkb", check=False)
    subprocess.run(["nft", "-f", "-"], input=nft, text=True, check=True)
    t_ipvs = send_flows(n, VIP_IPVS)
    t_ct = send_flows(n, VIP_CT)
    time.sleep(0.5)
    print(
        f"  populated: {n} IPVS flows in {t_ipvs:.1f} s, {n} conntrack flows in {t_ct:.1f} s; "
        f"IPVS conns to backend 0: {ipvs_conns_to(backend(0))}, nf_conntrack_count {ct_count()}"
    )


def wait_gone(dest: ipaddress.IPv4Address, timeout: float = 120) -> None:
    start = time.monotonic()
    while ipvs_conns_to(dest) and time.monotonic() - start < timeout:
        time.sleep(0.02)


def bench(lab: Lab, n: int) -> dict[str, float]:
    print(f"== N = {n} (IPVS connections and conntrack entries, {N_BACKENDS} backends)")
    build(lab, n)
    ipvs, ct = NetlinkIPVS(), NetlinkConntrack()
    ipvs.get_timeouts()  # the agent's adapter has its socket open already: time the flush, not the open
    sysctl_write("net.ipv4.vs.expire_nodest_conn", 1)
    out: dict[str, float] = {}

    dead_a, dead_b = backend(0), backend(1)
    before = ipvs_conns_to(dead_a)
    t = time.monotonic()
    ipvs.flush_dead_real_server(SVC, Endpoint(dead_a, 53))
    out["ipvs adapter call"] = time.monotonic() - t
    wait_gone(dead_a)
    out["ipvs adapter"] = time.monotonic() - t
    assert ipvs_conns_to(dead_a) == 0, "adapter flush incomplete"
    before_b = ipvs_conns_to(dead_b)
    t = time.monotonic()
    run("ipvsadm", "-e", "-u", f"{VIP_IPVS}:53", "-r", f"{dead_b}:53", "-m", "-w", "0")
    run("ipvsadm", "-d", "-u", f"{VIP_IPVS}:53", "-r", f"{dead_b}:53")
    out["ipvs cli call"] = time.monotonic() - t
    wait_gone(dead_b)
    out["ipvs cli"] = time.monotonic() - t
    print(
        f"  IPVS calls: adapter {out['ipvs adapter call']:.3f} s, ipvsadm x2 {out['ipvs cli call']:.3f} s, "
        f"ratio cli/adapter {out['ipvs cli call'] / out['ipvs adapter call']:.2f}"
    )
    print(
        f"  IPVS until gone: {before} / {before_b} entries flushed; adapter {out['ipvs adapter']:.3f} s, "
        f"ipvsadm {out['ipvs cli']:.3f} s, ratio cli/adapter {out['ipvs cli'] / out['ipvs adapter']:.2f}"
    )

    count0 = ct_count()
    t = time.monotonic()
    deleted = ct.delete_udp_entries(VIP_CT, 53, dead_a)
    out["conntrack adapter"] = time.monotonic() - t
    t = time.monotonic()
    proc = subprocess.run(
        [
            "conntrack",
            "-D",
            "-p",
            "udp",
            "--orig-dst",
            str(VIP_CT),
            "--orig-port-dst",
            "53",
            "--reply-src",
            str(dead_b),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    out["conntrack cli"] = time.monotonic() - t
    cli_deleted = proc.stdout.count("\n")
    print(
        f"  conntrack: {deleted} / {cli_deleted} entries deleted of {count0}; adapter "
        f"{out['conntrack adapter']:.3f} s, conntrack -D {out['conntrack cli']:.3f} s, "
        f"ratio cli/adapter {out['conntrack cli'] / out['conntrack adapter']:.2f}"
    )
    assert ct.list_udp_entries(VIP_CT, 53, dead_a) == []
    assert ct.list_udp_entries(VIP_CT, 53, dead_b) == []
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    args, _ = ap.parse_known_args()  # the VM passes one argument list to both kernel benchmarks
    if os.geteuid() != 0 or not Path("/proc/net/ip_vs").exists():
        print(
            "kernel_flush: needs root and IPVS: run scripts/vm/run-kernel-tests.sh --bench", file=sys.stderr
        )
        return 77
    sizes = [int(s) for s in args.sizes.split(",")]
    # The table size is global (init namespace); room for the largest run plus slack.
    Path("/proc/sys/net/netfilter/nf_conntrack_max").write_text(str(max(sizes) * 3))
    lab = Lab.build()
    try:
        ip_batch([f"addr add 10.0.{100 + j}.{2 + h}/32 dev eth0" for j in range(3) for h in (0, 1)], CLIENT)
        ip_batch(["route add 10.1.0.0/16 dev pmk-b1n", "route add 10.0.0.0/8 dev pmk-cn"], NODE)
        lab.enter()
        # Unreplied UDP entries live 30 s by default; populating 100k takes longer than that.
        sysctl_write("net.netfilter.nf_conntrack_udp_timeout", 3600)
        results = {n: bench(lab, n) for n in sizes}
    finally:
        lab.close()
    out = Path(os.environ.get("KERNEL_REPORT_DIR", ".")) / "kernel_flush.json"
    out.write_text(json.dumps({str(n): r for n, r in results.items()}, indent=2))
    print(
        "summary (seconds): "
        + "; ".join(f"N={n}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items()) for n, r in results.items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
