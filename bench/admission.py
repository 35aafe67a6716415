"""What the API emulator spends on one agent report: a merge patch of a NodeProxyHealth's status,
admitted (pruned, defaulted, validated against the CRD's schema and CEL rules) and stored.

This is the request every agent sends, thousands of times per rollout in ``python -m bench``,
where the emulator shares a core with the simulated agents. Prints microseconds per write (best
of several runs). Run: .venv/bin/python -m bench.admission [--writes N] [--runs N]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from proxymedic.api.crd import KINDS, build_crd
from proxymedic.emulator.server import KubernetesApiEmulator

MERGE_PATCH = "application/merge-patch+json"


def report(round_: int) -> dict[str, Any]:
    """A healthy node's report: the CoreDNS virtual servers with two real servers each."""
    stamp = f"2026-01-01T00:{round_ // 60 % 60:02d}:{round_ % 60:02d}Z"
    servers = [
        {
            "vip": "10.96.0.10",
            "port": port,
            "protocol": protocol,
            "scheduler": "rr",
            "realServers": [
                {"ip": ip, "port": 53, "weight": 1, "activeConnections": 0, "inactiveConnections": round_ % 7}
                for ip in ("10.244.1.10", "10.244.2.11")
            ],
            "orphanedConnections": [],
        }
        for port, protocol in ((53, "UDP"), (53, "TCP"), (9153, "TCP"))
    ]
    return {
        "status": {
            "observedAt": stamp,
            "agentVersion": "bench",
            "proxyMode": "ipvs",
            "kubeProxy": {"freshness": "Fresh", "healthz": "Healthy"},
            "virtualServers": servers,
            "sysctls": {"net.ipv4.vs.expire_nodest_conn": 1, "net.ipv4.vs.conn_reuse_mode": 1},
        }
    }


def measure(writes: int) -> float:
    """Seconds per status write, over ``writes`` writes to one object."""
    emulator = KubernetesApiEmulator(keep_requests=False)
    for info in KINDS:
        emulator.register_crd(build_crd(info))
    spec = emulator.spec("proxymedic.io/v1alpha1", "nodeproxyhealths")
    emulator.store.create(spec, None, {"metadata": {"name": "node-1"}, "spec": {"nodeName": "node-1"}})
    started = time.perf_counter()
    for n in range(writes):
        emulator.store.patch(spec, None, "node-1", report(n), MERGE_PATCH, subresource="status")
    return (time.perf_counter() - started) / writes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    best = min(measure(args.writes) for _ in range(args.runs))
    print(f"NodeProxyHealth status write, admitted and stored: {best * 1e6:.0f} µs (best of {args.runs})")


if __name__ == "__main__":
    main()
