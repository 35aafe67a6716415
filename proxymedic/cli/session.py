"""``proxymedic demo --session``: the demo cluster with ProxyMedic, then ``status`` and ``diagnose``.

The demo's CoreDNS rollout runs first (node-3's kube-proxy loses its watch and ProxyMedic
restarts it). Then node-3's new kube-proxy loses its watch too and CoreDNS scales up: node-3
misses the new backend, and the restart it needs is held by the node cooldown. While it is
held, the real ``proxymedic`` command runs against the demo cluster's API server, through a
kubeconfig, exactly as a user runs it against a cluster.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxymedic.api import reasons
from proxymedic.cli.demo import NEW_BACKENDS, NODES, STALLED, Timing
from proxymedic.emulator.connection import write_kubeconfig
from proxymedic.sim.coredns import POLICY
from proxymedic.sim.kubeproxy import Stall
from proxymedic.sim.waiting import until
from proxymedic.sim.world import World, WorldSettings

SCALE_UP = "10.244.100.22"
COMMANDS: tuple[tuple[str, ...], ...] = (("status",), ("diagnose", STALLED))


@dataclass(frozen=True)
class SessionTiming:
    demo: Timing = field(default_factory=lambda: Timing(settle=0.0))
    wait: float = 40.0
    """Seconds to wait for each thing the session waits for (a restart, a hold)."""


async def posted_names(world: World) -> set[str]:
    """The names of the Events posted so far."""
    return {str(e["metadata"]["name"]) for e in await world.events()}


async def event_posted(world: World, reason: str, node: str, seen: set[str], within: float) -> None:
    """Wait for an Event with this reason about this node that is not among those ``seen`` before."""

    async def posted() -> bool:
        return any(
            e.get("reason") == reason
            and e.get("involvedObject", {}).get("name") == node
            and e["metadata"]["name"] not in seen
            for e in await world.events()
        )

    async with asyncio.timeout(within):
        while not await posted():  # noqa: ASYNC110 - the Events live in the API server, not in this loop
            await asyncio.sleep(0.1)


SESSION_POLICY: dict[str, Any] = {**POLICY, "guardrails": {**POLICY["guardrails"], "nodeCooldown": "1m"}}
"""The demo's policy with a cooldown longer than the second stall's staleAfter plus minimum
observation: the session shows the guardrail holding the second restart."""


async def _run(
    run_command: Callable[[Sequence[str]], int], timing: SessionTiming, say: Callable[[str], None]
) -> int:
    settings = WorldSettings(nodes=NODES, with_proxymedic=True, policy_spec=SESSION_POLICY, sync_period=3.0)
    async with World(settings) as world:
        async with asyncio.timeout(timing.wait):
            await until(world.settled)
        world.traffic = True
        await asyncio.sleep(timing.demo.warm_up)
        say(f"# {STALLED}'s kube-proxy loses its watch; CoreDNS rolls out (the demo)")
        seen = await posted_names(world)
        world.stall(STALLED, Stall.DEAD_WATCH)
        await world.rollout(NEW_BACKENDS, lameduck=timing.demo.lameduck, surge_wait=timing.demo.surge_wait)
        await event_posted(world, reasons.KUBE_PROXY_RESTARTED, STALLED, seen, timing.wait)
        async with asyncio.timeout(timing.wait):  # the DaemonSet brings the new kube-proxy up
            await until(lambda: world.nodes[STALLED].kube_proxy.restarts > 0)
        await asyncio.sleep(timing.demo.settle)
        say("# ProxyMedic restarted it; now the new kube-proxy loses its watch too, and CoreDNS scales up")
        seen = await posted_names(world)
        world.stall(STALLED, Stall.DEAD_WATCH)
        await world.add_backend(SCALE_UP)
        await event_posted(world, reasons.REMEDIATION_HELD, STALLED, seen, timing.wait)
        with tempfile.TemporaryDirectory() as directory:
            kubeconfig = write_kubeconfig(world.url, Path(directory) / "kubeconfig")
            for command in COMMANDS:
                say("")
                say(f"$ proxymedic {' '.join(command)}")
                argv = [*command, "--kubeconfig", str(kubeconfig), "--color", "never"]
                code = await asyncio.to_thread(run_command, argv)
                if code != 0:
                    return code
        world.traffic = False
    return 0


def run_session(run_command: Callable[[Sequence[str]], int], timing: SessionTiming = SessionTiming()) -> int:
    """``run_command``: the CLI's own entry point, which runs each command shown (passed in, so
    this module need not import the one that imports it)."""
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("kopf").setLevel(logging.CRITICAL)
    return asyncio.run(_run(run_command, timing, lambda line: print(line, flush=True)))
