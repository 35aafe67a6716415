"""A scripted soak: CoreDNS rollouts, kube-proxy stalls, operator and agent kills and API fault
bursts at seeded random points of a long stretch of simulated cluster time.

The World runs on real time; the soak scales every timing by ``1/SCALE`` (kube-proxy's sync
period, the agents' sense interval, the operator's sweep, the pod restart delay, the policy's
cooldown and observation times, the intent TTL), and expresses its script in cluster seconds, so
30 cluster minutes take about a minute of wall time. Hourly budgets are not scaled: the operator
counts them on its real clock, which only makes them stricter here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from proxymedic.kube.resources import ENDPOINT_SLICES, EVENTS, INTENTS, NODE_HEALTHS
from proxymedic.operator.controller import ControllerSettings
from proxymedic.operator.handlers import OperatorOptions
from proxymedic.sim.kubeproxy import Stall
from proxymedic.sim.world import NodeSpec, World, WorldSettings
from tests.reliability.faults_api import Faults
from tests.scenarios.harness import ALL_ACTIONS, eventually, has_state_of, settled

SCALE = 30.0
"""Cluster seconds per wall second."""
COOLDOWN = 10.0
"""The policy's nodeCooldown, wall seconds (5 cluster minutes)."""
PER_NODE_BUDGET = 6
"""The policy's hourlyBudget.perNode (the default)."""


def wall(cluster_seconds: float) -> float:
    return cluster_seconds / SCALE


def soak_world(nodes: int) -> World:
    options = OperatorOptions(
        standalone=True,
        housekeeping_interval=wall(5),
        controller=ControllerSettings(coalesce_window=0.05, intent_ttl=timedelta(seconds=wall(600))),
    )
    spec = {
        "services": {
            "namespaces": ["kube-system"],
            "labelSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        },
        "actions": ALL_ACTIONS,
        "guardrails": {"minObservation": f"{wall(30):g}s", "nodeCooldown": f"{COOLDOWN:g}s"},
    }
    return World(
        WorldSettings(
            nodes=[NodeSpec(f"node-{i}") for i in range(1, nodes + 1)],
            policy_spec=spec,
            min_sync_period=max(0.1, wall(1)),
            sync_period=wall(30),
            restart_delay=wall(5),
            agent_sense_interval=wall(10),
            agent_stale_after=wall(60),
            agent_settle=wall(30),
            operator=options,
        )
    )


@dataclass
class SoakFigures:
    cluster_minutes: float
    seed: int
    actions: Counter[str] = field(default_factory=Counter)
    faults: dict[str, int] = field(default_factory=dict)
    dead_backends: int = 0
    node_states_cleared: int = 0
    restarts: dict[str, int] = field(default_factory=dict)
    stalls: Counter[str] = field(default_factory=Counter)
    allowed_restarts: dict[str, int] = field(default_factory=dict)
    queries: int = 0
    failed_queries: int = 0
    wall_seconds: float = 0.0

    def line(self) -> str:
        return (
            f"soak {self.cluster_minutes:g} cluster-min (seed {self.seed}, x{SCALE:g}): "
            f"{dict(self.actions)}; "
            f"faults {sum(self.faults.values())} {self.faults}; {self.dead_backends} dead backends, "
            f"{self.node_states_cleared} node states cleared; restarts {self.restarts} "
            f"(stalls {dict(self.stalls)}, allowed {self.allowed_restarts}); "
            f"queries {self.queries}, failed {self.failed_queries}; wall {self.wall_seconds:.0f}s"
        )


class Soak:
    def __init__(self, w: World, minutes: float, seed: int) -> None:
        self.w = w
        self.rng = random.Random(seed)
        self.figures = SoakFigures(minutes, seed)
        self.faults = Faults(w.emulator)
        self._next_ip = ipaddress.ip_address("10.244.102.1")
        self.gone: list[str] = []

    def _ip(self) -> str:
        ip = str(self._next_ip)
        self._next_ip += 1
        return ip

    async def rollout(self) -> None:
        """Replace each ready pod (maxSurge 1), with a 5 cluster-second lameduck."""
        for old in [ip for ip, state in self.w.pods.items() if state == "ready"]:
            await self.w.add_backend(self._ip())
            await asyncio.sleep(wall(3))
            await self.w.terminate_backend(old, lameduck=wall(5))
            self.gone.append(old)
        self.figures.actions["rollouts"] += 1

    async def stall(self) -> None:
        stalled = [n for n, node in self.w.nodes.items() if node.kube_proxy.stall is not Stall.NONE]
        if stalled:  # one at a time: more would be the anomaly breaker's storm, tested on its own
            return
        name = self.rng.choice(sorted(self.w.nodes))
        self.w.stall(name, Stall.DEAD_WATCH)
        self.figures.stalls[name] += 1
        self.figures.actions["stalls"] += 1

    async def kill_operator(self) -> None:
        await self.w.stop_component("operator")
        self.figures.actions["operator kills"] += 1
        await asyncio.sleep(wall(self.rng.uniform(10, 90)))
        self.w.start_operator()

    async def kill_agent(self) -> None:
        name = self.rng.choice(sorted(self.w.nodes))
        await self.w.stop_component(f"agent:{name}")
        self.figures.actions["agent kills"] += 1
        await asyncio.sleep(wall(self.rng.uniform(5, 60)))
        self.w.start_agent(name)

    async def fault_burst(self) -> None:
        kind = self.rng.choice(["500", "429", "cut", "410", "slow"])
        f = self.faults
        if kind == "500":
            f.error("patch", NODE_HEALTHS, 500, 3)
            f.error("post", INTENTS, 500, 1)
            f.error("watch", INTENTS, 500, 2)
        elif kind == "429":
            f.throttle("patch", NODE_HEALTHS, 3, retry_after=1)
            f.throttle("post", EVENTS, 1, retry_after=1)
        elif kind == "cut":
            f.cut_watch(ENDPOINT_SLICES, 1, after=0)
            f.cut_watch(INTENTS, 2, after=0)
        elif kind == "410":
            f.gone(NODE_HEALTHS, 1)
            f.gone(INTENTS, 2)
        else:
            f.slow("patch", NODE_HEALTHS, 3, delay=wall(15))
            f.slow("watch", ENDPOINT_SLICES, 1, delay=wall(15))
        self.w.emulator.drop_watches()
        self.figures.actions[f"fault bursts ({kind})"] += 1

    async def run(self) -> SoakFigures:
        w = self.w
        started = time.monotonic()
        w.traffic = True
        end = started + wall(self.figures.cluster_minutes * 60)
        actions = [
            self.rollout,
            self.rollout,
            self.stall,
            self.kill_operator,
            self.kill_agent,
            self.fault_burst,
        ]
        while time.monotonic() < end:
            await asyncio.sleep(wall(self.rng.uniform(20, 60)))
            await self.rng.choice(actions)()
        if w.controller is None:
            w.start_operator()
        for name in w.nodes:
            if f"agent:{name}" not in w._components:
                w.start_agent(name)
        await self.rollout()  # a last change brings out any kube-proxy still stalled
        await self.settle()
        self.figures.wall_seconds = time.monotonic() - started
        return self.check(self.figures.wall_seconds)

    def _quiet(self) -> bool:
        w = self.w
        in_use = w.in_use()
        for node in w.nodes.values():
            programmed = {str(rs.endpoint.ip) for vs in node.model.list_services() for rs in vs.real_servers}
            if programmed != set(in_use):
                return False
        return not any(has_state_of(w, name, ip) for name in w.nodes for ip in self.gone)

    async def settle(self) -> None:
        await eventually(self._quiet, within=60)

    def check(self, elapsed: float) -> SoakFigures:
        w, figures = self.w, self.figures
        figures.faults = self.faults.injected
        figures.dead_backends = len(self.gone)
        figures.node_states_cleared = len(self.gone) * len(w.nodes)
        figures.restarts = {name: node.kube_proxy.restarts for name, node in w.nodes.items()}
        # What the guardrails allow a node within the run: one restart per cooldown, within the
        # hourly per-node budget (the run is shorter than an hour of the operator's clock).
        figures.allowed_restarts = {
            name: min(PER_NODE_BUDGET, 1 + int(elapsed // COOLDOWN)) for name in w.nodes
        }
        figures.queries = sum(c.stats.sent for node in w.nodes.values() for c in node.clients)
        figures.failed_queries = sum(c.stats.failed for node in w.nodes.values() for c in node.clients)
        assert all(figures.restarts[name] <= figures.allowed_restarts[name] for name in w.nodes), (
            figures.restarts,
            figures.allowed_restarts,
        )
        assert not any(has_state_of(w, name, ip) for name in w.nodes for ip in self.gone)
        return figures


async def soak(minutes: float, seed: int, nodes: int = 4) -> SoakFigures:
    async with soak_world(nodes) as w:
        await eventually(w.settled, within=30)
        await settled(w)
        return await Soak(w, minutes, seed).run()
