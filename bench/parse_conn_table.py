"""Throughput of the /proc/net/ip_vs_conn parser on a generated 1,000,000-line table.

The table is written in the kernel's format (mixed IPv4/IPv6, 50 backends, a few VIPs)
into a temporary directory. Prints the best lines/s over several runs and the peak
memory of one parse. Run: .venv/bin/python bench/parse_conn_table.py [--lines N] [--runs N]
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import tempfile
import time
import tracemalloc
from pathlib import Path

from proxymedic.dataplane.procfs import ProcConnectionTable

HEADER = "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData"
BACKENDS = 50
IPV6_SHARE = 0.25


def _proc(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return f"{int(address):08X}" if address.version == 4 else address.exploded


def write_table(path: Path, lines: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    vips4 = [
        ipaddress.IPv4Address("10.96.0.10"),
        ipaddress.IPv4Address("10.96.0.1"),
        ipaddress.IPv4Address("10.96.12.7"),
    ]
    vips6 = [ipaddress.IPv6Address("fd00:10:96::a"), ipaddress.IPv6Address("fd00:10:96::1")]
    backends4 = [
        _proc(ipaddress.IPv4Address("10.244.0.0") + 256 * (i // 10) + i + 2) for i in range(BACKENDS)
    ]
    backends6 = [
        _proc(ipaddress.IPv6Address("fd00:10:244::") + 65536 * (i // 10) + i + 2) for i in range(BACKENDS)
    ]
    services = [("UDP", 53, "UDP        "), ("TCP", 53, "ESTABLISHED"), ("TCP", 443, "TIME_WAIT  ")]
    with path.open("w") as out:
        out.write(HEADER + "\n")
        for _ in range(lines):
            proto, port, state = rng.choice(services)
            if rng.random() < IPV6_SHARE:
                client = _proc(ipaddress.IPv6Address(rng.getrandbits(128)))
                vip, dest = _proc(rng.choice(vips6)), rng.choice(backends6)
            else:
                client = f"{rng.getrandbits(32):08X}"
                vip, dest = _proc(rng.choice(vips4)), rng.choice(backends4)
            out.write(
                f"{proto} {client} {rng.getrandbits(16):04X} {vip} {port:04X} {dest} {port:04X} "
                f"{state} {rng.randrange(900):7d}\n"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "ip_vs_conn"
        write_table(path, args.lines)
        size_mib = path.stat().st_size / 2**20
        table = ProcConnectionTable(path)
        timings = []
        for _ in range(args.runs):
            started = time.perf_counter()
            scan = table.scan()
            timings.append(time.perf_counter() - started)
        if scan.lines != args.lines or scan.skipped:
            raise SystemExit(f"parse mismatch: {scan.lines} lines, {scan.skipped} skipped")
        tracemalloc.start()
        table.scan()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    best = min(timings)
    print(f"table: {args.lines:,} lines, {size_mib:.1f} MiB, {len(scan.counts)} (service, destination) pairs")
    median = sorted(timings)[len(timings) // 2]
    print(f"best of {args.runs}: {best:.3f} s = {args.lines / best:,.0f} lines/s")
    print(f"median: {median:.3f} s = {args.lines / median:,.0f} lines/s")
    print(f"peak memory of one parse (tracemalloc): {peak / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
