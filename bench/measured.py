"""A simulated cluster under measurement: the benchmarks' settings of ``proxymedic.sim``'s World
at scale, and what they measure on it.

The cluster is the World of the demo and the tests. At thousands of nodes in one process the
benchmarks choose: setup objects go straight into the emulator's store (not API traffic worth
measuring); the operator is a real ``proxymedic operator --kubeconfig`` subprocess; one
RemediationIntent watch feeds every agent's inbox (each agent handles its events in order, as its
own watch would deliver them); the agents start spread over one sensing interval and share one
pool of 200 HTTP connections to the emulator. What is measured here: every write request the
emulator serves, when the shared watch delivered each intent, and each node's repair latency.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any

import aiohttp.web
import attrs
import kmock

from proxymedic.emulator.server import KubernetesApiEmulator
from proxymedic.operator.handlers import OperatorOptions
from proxymedic.sim.coredns import POLICY
from proxymedic.sim.kubeproxy import Stall
from proxymedic.sim.world import NodeSpec, SimNode, World, WorldSettings

Write = tuple[float, str, str, str, str]
"""(time, method, resource plural, subresource, object name) of one write request."""
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NEW_BACKENDS = ["10.244.100.20", "10.244.100.21"]


PRODUCTION_POLICY: dict[str, Any] = {key: value for key, value in POLICY.items() if key != "guardrails"}
"""The CoreDNS policy with the default guardrails (the demo's 2 s minimum observation removed)."""


@attrs.define(kw_only=True)
class CountingEmulator(KubernetesApiEmulator):
    """The emulator, recording every write request (time, method, resource plural, subresource)."""

    writes: list[Write] = attrs.field(factory=list)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        method = str(request.method).rsplit(".", 1)[-1].upper()
        if method in WRITE_METHODS:
            plural = request.resource.plural if request.resource is not None else ""
            self.writes.append(
                (
                    time.time(),
                    method,
                    str(plural or ""),
                    str(request.subresource or ""),
                    str(request.name or ""),
                )
            )
        return await super()._handle(request)


@dataclass
class NodeKind:
    """A class of nodes in a scenario."""

    name: str
    count: int
    kernel: tuple[int, int] = (6, 1)
    expire_nodest_conn: int = 1
    stall: Stall = Stall.NONE
    """How its kube-proxy breaks when the rollout starts."""


@dataclass
class Scenario:
    kinds: list[NodeKind]
    settings: WorldSettings


def scenario(kinds: list[NodeKind], housekeeping: float = 5.0, **world: Any) -> Scenario:
    """The cluster of ``kinds`` (nodes ``node-00001`` on), with the production settings of the agent
    (10 s sensing, 1 s write coalescing, 300 s heartbeat) unless ``world`` (WorldSettings fields)
    says otherwise, and the operator's housekeeping every ``housekeeping`` seconds."""
    nodes: list[NodeSpec] = []
    for kind in kinds:
        for _ in range(kind.count):
            name = f"node-{len(nodes) + 1:05d}"
            nodes.append(NodeSpec(name, kind.kernel, kind.expire_nodest_conn, note=kind.name))
    settings: dict[str, Any] = {
        "clients_per_node": 1,
        "query_interval": 0.1,
        "agent_sense_interval": 10.0,
        "agent_heartbeat": 300.0,
        "agent_min_write_interval": 1.0,
        "agent_stale_after": 60.0,
        "agent_settle": 5.0,
        "policy_spec": dict(POLICY),
        **world,
    }
    settings.update(
        operator=OperatorOptions(standalone=True, housekeeping_interval=housekeeping),
        operator_process=True,
        seed_through_store=True,
        shared_intent_watch=True,
        agent_start_spread=min(settings["agent_sense_interval"], 10.0),
        emulator=CountingEmulator,
        history_size=100_000,
        connection_limit=200,
    )
    return Scenario(kinds, WorldSettings(nodes=nodes, **settings))


class Measured:
    """``async with Measured(scenario) as cluster:`` runs the scenario's World (``cluster.world``)
    and records when the shared watch delivered each intent to the agents."""

    def __init__(self, scenario: Scenario) -> None:
        self.kinds = {kind.name: kind for kind in scenario.kinds}
        self.intents: dict[str, tuple[float, tuple[str, ...]]] = {}
        """Fast-path intents (all nodes): when the shared watch delivered them, and their dead backends."""
        self.world = World(replace(scenario.settings, on_intent_event=self._delivered))

    async def __aenter__(self) -> Measured:
        await self.world.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.world.__aexit__(*exc)

    def _delivered(self, event_type: str, obj: dict[str, Any]) -> None:
        spec = obj.get("spec") or {}
        name = str((obj.get("metadata") or {}).get("name", ""))
        if event_type == "ADDED" and spec.get("allNodes") and name not in self.intents:
            self.intents[name] = (time.time(), tuple(spec.get("deadBackends") or ()))

    def kind(self, node: SimNode) -> NodeKind:
        return self.kinds[node.spec.note]

    def stall(self) -> None:
        """Break each node's kube-proxy as its kind says."""
        for name, node in self.world.nodes.items():
            self.world.stall(name, self.kind(node).stall)

    async def wait_ready(self, within: float = 600.0) -> float:
        """Seconds until every agent has reported and the operator has accepted the policy."""
        started = time.monotonic()
        async with asyncio.timeout(within):
            while self.world.settings.with_proxymedic:
                if self.world.agents_reported() and await self.world.policy_accepted():
                    break
                await asyncio.sleep(0.2)
        return time.monotonic() - started

    def repair_latencies(self) -> dict[str, list[float]]:
        """Per dead backend: seconds from its EndpointSlice change to each node's verified result."""
        out_of_use = self.world.out_of_use_at
        by_backend: dict[str, list[float]] = {ip: [] for ip in out_of_use}
        for results in self.world.results.values():
            for result in results:
                intent = self.intents.get(result.intent)
                if intent is None:
                    continue
                for ip in intent[1]:
                    if ip in out_of_use:
                        by_backend[ip].append(result.completed_at.timestamp() - out_of_use[ip])
        return by_backend

    def writes_between(self, start: float, end: float) -> list[Write]:
        emulator = self.world.emulator
        assert isinstance(emulator, CountingEmulator)
        return [w for w in emulator.writes if start <= w[0] < end]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def count_by(writes: list[Write]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, method, plural, sub, _name in writes:
        key = f"{method} {plural}{'/' + sub if sub else ''}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))
