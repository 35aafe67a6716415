"""A CoreDNS rollout, with or without a stalled kube-proxy, run while the API server misbehaves,
and the invariant checked after it: nothing lost, no restart beyond what the guardrails allow."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from proxymedic.sim.kubeproxy import Stall
from proxymedic.sim.world import World
from tests.reliability.faults_api import Faults
from tests.scenarios.harness import (
    BUSY_KUBE_PROXY,
    NEW,
    OLD,
    events,
    eventually,
    has_state_of,
    policy,
    resyncs,
    sensed,
    settled,
    sweeps,
    wait_for_events,
    world,
)

STALLED = "node-2"
COOLDOWN = "1h"
"""The scenarios' node cooldown: within a test, at most one kube-proxy restart per node is allowed."""

Hook = Callable[[World, Faults], Awaitable[None]]


def fault_world(scenario: str) -> World:
    """Three nodes; every action on, one restart per node at most (cooldown), one at a time.

    ``rollout``: kube-proxy is busy (no sync within the test), so only ProxyMedic can clear the dead
    backends. ``stall``: node-2's kube-proxy has a dead watch and resyncs its stale cache every
    2 s, re-adding what ProxyMedic removes, until it is restarted.
    """
    spec = policy(nodeCooldown=COOLDOWN)
    if scenario == "rollout":
        # kube-proxy syncs nothing within the test, however long a busy machine makes it last, and
        # the agent calls it stale only after an hour without a sync: busy, not stale, so no node
        # has a reason to restart.
        return world(3, **BUSY_KUBE_PROXY, spec=spec)
    return world(3, sync_period=2.0, spec=spec)


@dataclass
class Figures:
    scenario: str
    injected: dict[str, int]
    dead_backends_flushed: int
    restarts: dict[str, int]
    allowed_restarts: dict[str, int]
    seconds: float
    intents: int = 0
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.scenario}: {sum(self.injected.values())} faults {self.injected}; "
            f"{self.dead_backends_flushed} dead backend x node states cleared; restarts {self.restarts} "
            f"(allowed {self.allowed_restarts}); {self.intents} intents; {self.seconds:.1f}s"
        )


async def run(w: World, faults: Faults, scenario: str, midway: Hook | None = None) -> Figures:
    """The rollout (``scenario`` is ``rollout`` or ``stall``), then the invariant."""
    started = time.monotonic()
    if scenario == "stall":
        w.stall(STALLED, Stall.DEAD_WATCH)
    w.traffic = True
    if scenario == "rollout":
        # maxSurge 100%: the new pods start and kube-proxy programs them; then it has no sync left
        # while the old pods terminate, so every dead backend must be cleared by ProxyMedic.
        for ip in NEW:
            await w.add_backend(ip)
        for node in w.nodes.values():
            node.kube_proxy.sync(time.time())
        await w.terminate_backend(OLD[0], lameduck=0.3)
        if midway is not None:
            await midway(w, faults)
        await w.terminate_backend(OLD[1], lameduck=0.3)
    else:
        await w.add_backend(NEW[0])
        await asyncio.sleep(0.3)
        await w.terminate_backend(OLD[0], lameduck=0.3)
        if midway is not None:
            await midway(w, faults)
        await w.add_backend(NEW[1])
        await asyncio.sleep(0.3)
        await w.terminate_backend(OLD[1], lameduck=0.3)
    return await check(w, faults, scenario, started)


def _dead_state_left(w: World) -> list[tuple[str, str]]:
    return [(node, ip) for node in w.nodes for ip in OLD if has_state_of(w, node, ip)]


def _repaired(w: World) -> bool:
    """node-2's kube-proxy programs the new pods again (it was restarted)."""
    model = w.nodes[STALLED].model
    programmed = {str(rs.endpoint.ip) for vs in model.list_services() for rs in vs.real_servers}
    return set(NEW) <= programmed


async def check(w: World, faults: Faults, scenario: str, started: float) -> Figures:
    """Every dead backend cleared on every node, every intent summarised, restarts within the guardrails."""
    stalled = w.nodes[STALLED].kube_proxy
    await eventually(lambda: not _dead_state_left(w))
    if scenario == "rollout":
        assert all(node.kube_proxy.pending for node in w.nodes.values()), (
            "kube-proxy has not synced: ProxyMedic did"
        )
    else:
        await eventually(lambda: stalled.restarts >= 1 and _repaired(w))
    await eventually(
        lambda: bool(
            w.controller is not None
            and w.controller.cluster.intents
            and all(t.summarized for t in w.controller.cluster.intents.values())
        ),
    )
    # Fresh reports and sweeps later (and in the stall, resyncs that would re-add what a stale
    # cache holds): nothing comes back and nothing else restarts.
    if scenario == "stall":
        await resyncs(w)
    await sensed(w)
    await sweeps(w)
    # A restart's Event is posted after its pod is deleted: wait for every restart's, then count.
    await wait_for_events(w, "KubeProxyRestarted", count=sum(n.kube_proxy.restarts for n in w.nodes.values()))
    assert not _dead_state_left(w), _dead_state_left(w)
    restarts = {name: node.kube_proxy.restarts for name, node in w.nodes.items()}
    # A node restarts only when it is stale, once per cooldown (1h): the stalled node once, the others never.
    allowed = {name: (1 if scenario == "stall" and name == STALLED else 0) for name in w.nodes}
    restarted = await events(w, "KubeProxyRestarted")
    assert restarts == allowed, (restarts, allowed, [e["message"] for e in restarted])
    assert len(restarted) == sum(restarts.values()), [e["message"] for e in restarted]
    assert all(e["involvedObject"]["name"] == STALLED for e in restarted)
    assert w.controller is not None
    figures = Figures(
        scenario=scenario,
        injected=faults.injected,
        dead_backends_flushed=len(OLD) * len(w.nodes),
        restarts=restarts,
        allowed_restarts=allowed,
        seconds=time.monotonic() - started,
        intents=len(w.controller.cluster.intents),
    )
    record(figures.scenario, figures.line())
    return figures


def record(name: str, line: str) -> None:
    """Append a figure line to $PROXYMEDIC_RELIABILITY_FIGURES (how docs/reliability.md's counts are made)."""
    path = os.environ.get("PROXYMEDIC_RELIABILITY_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(
                json.dumps({"test": os.environ.get("PYTEST_CURRENT_TEST", name), "figures": line}) + "\n"
            )


async def within_fault_world(scenario: str, install: Hook, midway: Hook | None = None) -> Figures:
    async with fault_world(scenario) as w:
        await settled(w)
        faults = Faults(w.emulator)
        await install(w, faults)
        figures = await run(w, faults, scenario, midway)
        for fault in faults.faults:
            assert fault.injected > 0, f"the scenario never met fault {fault.name!r}"
        return figures
