"""``proxymedic demo --serve``: the demo cluster with ProxyMedic, kept running to explore.

The demo's CoreDNS rollout runs once (node-2's expire_nodest_conn is 0, node-3's kube-proxy
loses its watch); then the cluster keeps running, its API server reachable through a
kubeconfig, until SIGINT (Ctrl-C) or SIGTERM. ``proxymedic status``, ``proxymedic diagnose`` and
kubectl read it as they read a real cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from proxymedic.api import reasons
from proxymedic.cli.demo import NEW_BACKENDS, NODES, STALLED, Timing, policy_manifest
from proxymedic.cli.session import event_posted, posted_names
from proxymedic.emulator.connection import write_kubeconfig
from proxymedic.sim.coredns import POLICY
from proxymedic.sim.kubeproxy import Stall
from proxymedic.sim.waiting import until
from proxymedic.sim.world import World, WorldSettings

KUBECONFIG_LINE = "kubeconfig: "
"""The line that names the kubeconfig starts with this, for scripts that wait for it."""


@dataclass(frozen=True)
class ServeTiming:
    demo: Timing = field(default_factory=lambda: Timing(settle=2.0))
    wait: float = 40.0
    """Seconds to wait for the cluster to settle, and for the restart of node-3's kube-proxy."""


# The emulator serves no server-side tables, so kubectl would print names and ages only.
EVENT_COLUMNS = "TYPE:.type,REASON:.reason,OBJECT:.involvedObject.name,MESSAGE:.message"


def commands(kubeconfig: Path) -> list[str]:
    """What to try against the running demo cluster."""
    return [
        f"proxymedic status --kubeconfig {kubeconfig}",
        f"proxymedic diagnose node-2 --kubeconfig {kubeconfig}",
        f"proxymedic diagnose {STALLED} --kubeconfig {kubeconfig}",
        f"kubectl --kubeconfig {kubeconfig} get events -A --sort-by=.lastTimestamp "
        f"-o custom-columns={EVENT_COLUMNS}",
        f"kubectl --kubeconfig {kubeconfig} get proxyhealthpolicies,nodeproxyhealths,remediationintents",
    ]


async def _rollout(world: World, timing: ServeTiming, say: Callable[[str], None]) -> None:
    """The demo's rollout with ProxyMedic, once, so the cluster has a history to read."""
    async with asyncio.timeout(timing.wait):
        await until(world.settled)
    say(f"CoreDNS rolls out while {STALLED}'s kube-proxy has lost its watch ...")
    world.traffic = True
    await asyncio.sleep(timing.demo.warm_up)
    seen = await posted_names(world)
    world.stall(STALLED, Stall.DEAD_WATCH)
    await world.rollout(NEW_BACKENDS, lameduck=timing.demo.lameduck, surge_wait=timing.demo.surge_wait)
    with contextlib.suppress(TimeoutError):  # a slow machine: the restart then shows up later
        await event_posted(world, reasons.KUBE_PROXY_RESTARTED, STALLED, seen, timing.wait)
    await asyncio.sleep(timing.demo.settle)
    world.traffic = False  # the clients' history is in the Events; idle, the cluster costs little


async def serve_demo(
    stop: asyncio.Event, say: Callable[[str], None], timing: ServeTiming = ServeTiming()
) -> int:
    """Run the demo cluster until ``stop`` is set; the kubeconfig is removed on the way out."""
    settings = WorldSettings(nodes=NODES, with_proxymedic=True, policy_spec=POLICY, sync_period=3.0)
    directory = Path(tempfile.mkdtemp(prefix="proxymedic-demo-"))
    try:
        async with World(settings) as world:
            say(f"The demo cluster's API server is at {world.url}; ProxyMedic runs with this policy:")
            say("")
            say(policy_manifest())
            rollout = asyncio.create_task(_rollout(world, timing, say))
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({rollout, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not rollout.done():
                rollout.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await rollout
                stopped.cancel()
                return 0
            rollout.result()
            kubeconfig = write_kubeconfig(world.url, directory / "kubeconfig")
            say("")
            say(f"{KUBECONFIG_LINE}{kubeconfig}")
            say("")
            say("The cluster keeps running (its 4 nodes, their agents, the operator). Try:")
            for command in commands(kubeconfig):
                say(f"  {command}")
            say("")
            say("Ctrl-C stops it.")
            await stopped
            say("Stopping the demo cluster ...")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


def run_serve() -> int:
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("kopf").setLevel(logging.CRITICAL)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        return await serve_demo(stop, lambda line: print(line, flush=True))

    return asyncio.run(main())
