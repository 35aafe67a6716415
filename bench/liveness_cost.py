"""What the agents' read of a Service's EndpointSlices before each flush costs the repair latency.

``python -m bench.liveness_cost [--nodes 1000] [--pairs 2]``: the scale benchmark's rollout, run
in pairs, once as the product runs (each agent asks the API which backends are live just before
it acts, ``agent/liveness.py``) and once with that answer given without asking. In this harness
every agent shares one process with the emulator, so the reads are served one after the other;
on a cluster each agent reads in parallel, and the API server answers one read per agent per
intent. The second variant is a measurement device, never a way to run ProxyMedic.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bench import run_all
from bench.rollout import Timing, run
from proxymedic.agent.liveness import InUse
from proxymedic.agent.runner import AgentRunner


async def _without_read(self: AgentRunner, namespace: str, service: str) -> InUse:
    return InUse()


async def one(nodes: int, read: bool) -> dict[str, Any]:
    original = AgentRunner.backends_in_use
    if not read:
        AgentRunner.backends_in_use = _without_read  # type: ignore[method-assign]
    try:
        timing = Timing(warm_up=3.0, steady=0.0, surge_wait=1.0, lameduck=2.0, settle=8.0)
        result = await run(
            run_all.scale_settings(nodes, 15.0), timing, f"{nodes} nodes", run_all.PRODUCTION_HEARTBEAT
        )
    finally:
        AgentRunner.backends_in_use = original  # type: ignore[method-assign]
    return dict(result["latency"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=2)
    args = parser.parse_args()
    for pair in range(args.pairs):
        for read in (False, True):
            latency = asyncio.run(one(args.nodes, read))
            print(
                f"pair {pair + 1}, {args.nodes} nodes, {'with' if read else 'without'} the agents' read: "
                f"repair latency p50 {latency['p50'] * 1000:.0f} ms, p99 {latency['p99'] * 1000:.0f} ms"
            )


if __name__ == "__main__":
    main()
