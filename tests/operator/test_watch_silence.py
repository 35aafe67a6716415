"""A kube-proxy whose watch died is found by its counter of EndpointSlice events, compared across nodes.

The first tests feed ``Cluster`` as the handlers do (slice events with their generation, reports
with sensing rounds) on the test's clock, and pin when a flat counter is evidence and when it is
not. The last one drives the real controller and node repairs against the API emulator: the
silent node, and it alone, gets a Warning and a restart decision.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from proxymedic.api.health import FindingType
from proxymedic.emulator.runner import serve
from proxymedic.kube.client import Connection, KubeClient
from proxymedic.kube.events import EventRecorder
from proxymedic.kube.resources import EVENTS
from proxymedic.operator.controller import Controller
from proxymedic.operator.drift import RESTART_WORTHY
from proxymedic.operator.repairs import NodeRepairs
from proxymedic.operator.state import Cluster
from proxymedic.sim.coredns import DnsPods, dns_service
from tests.contract.test_crd_parity import CRDS
from tests.unit.factories import policy

T0 = datetime(2030, 1, 1, tzinfo=UTC)
NODES = ("node-1", "node-2", "node-3")
STARTED = T0 - timedelta(days=1)
STALE_AFTER = timedelta(seconds=30)


def health(node: str, round_: int, total: int | None, started: datetime | None = STARTED) -> dict[str, Any]:
    kube_proxy: dict[str, Any] = {"freshness": "Fresh"}
    if total is not None:
        kube_proxy["endpointChangesTotal"] = total
    if started is not None:
        kube_proxy["startedAt"] = started.isoformat()
    return {
        "apiVersion": "proxymedic.io/v1alpha1",
        "kind": "NodeProxyHealth",
        "metadata": {"name": node},
        "spec": {"nodeName": node},
        "status": {
            "observedAt": T0.isoformat(),
            "incarnation": f"agent-{node}",
            "round": round_,
            "proxyMode": "nftables",
            "kubeProxy": kube_proxy,
        },
    }


def dns_slice(generation: int, backend: str) -> dict[str, Any]:
    raw = DnsPods({backend: "ready"}).endpoint_slice()
    raw["metadata"].update(uid="slice-1", generation=generation)
    return raw


class World:
    """The operator's memory of three nodes, fed on a clock the test moves."""

    def __init__(self) -> None:
        self.cluster = Cluster()
        self.now = T0
        self.rounds = dict.fromkeys(NODES, 0)
        self.totals = dict.fromkeys(NODES, 100)
        self.cluster.set_slice(dns_slice(1, "10.244.1.5"), deleted=False, now=self.now)

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def report(self, node: str, total: int | None = None, started: datetime | None = STARTED) -> None:
        self.rounds[node] += 1
        if total is not None:
            self.totals[node] = total
        raw = health(node, self.rounds[node], self.totals[node], started)
        assert self.cluster.set_health(node, raw, self.now) is not None

    def report_all(self) -> None:
        for node in NODES:
            self.report(node)

    def change(self, generation: int, counted_by: tuple[str, ...]) -> None:
        """A slice changes; the kube-proxies named count it (their next report shows it)."""
        self.cluster.set_slice(dns_slice(generation, f"10.244.1.{generation}"), deleted=False, now=self.now)
        for node in counted_by:
            self.totals[node] += 1

    def silent(self) -> dict[str, str]:
        found = {node: self.cluster.watch.finding(node, self.now, STALE_AFTER) for node in NODES}
        return {node: f.message for node, f in found.items() if f is not None}


def steady_world() -> World:
    world = World()
    for _ in range(3):  # reports older than the margin: the *before* of the next change
        world.report_all()
        world.tick(5)
    return world


def after_settling(world: World, seconds: float = 15) -> None:
    """Time for the change to land, then one report from every node sensed after that."""
    world.tick(seconds)
    world.report_all()  # settles the probe: its baseline is the rounds seen now
    world.tick(1)
    world.report_all()  # sensed after the baseline: the verdicts


@pytest.mark.unit
def test_a_flat_counter_across_a_change_the_others_counted_is_a_silent_watch() -> None:
    world = steady_world()
    world.change(2, counted_by=("node-2", "node-3"))
    after_settling(world)
    assert world.silent() == {}, "not before staleAfter has passed since the change"
    world.tick(20)
    world.report_all()
    found = world.silent()
    assert list(found) == ["node-1"]
    assert "stayed at 100 across a change that 2 of 2 other nodes' kube-proxies counted" in found["node-1"]
    assert FindingType.KUBE_PROXY_WATCH_SILENT in RESTART_WORTHY


@pytest.mark.unit
def test_no_finding_unless_a_strict_majority_of_the_others_counted_it() -> None:
    world = steady_world()
    world.change(2, counted_by=("node-3",))
    after_settling(world, 45)
    assert world.silent() == {}, "two of three flat: not one kube-proxy's fault"


@pytest.mark.unit
def test_a_change_the_operator_learns_late_proves_nothing() -> None:
    """The operator's watch lagged: every report it holds from before the margin already counted
    the change, so every node looks as if it missed it, and none is found."""
    world = steady_world()
    for node in NODES:
        world.totals[node] += 1
    world.report_all()
    world.tick(15)
    world.report_all()
    world.change(2, counted_by=())
    after_settling(world, 45)
    assert world.silent() == {}


@pytest.mark.unit
def test_a_counter_that_moves_again_ends_the_silence() -> None:
    world = steady_world()
    world.change(2, counted_by=("node-2", "node-3"))
    after_settling(world, 45)
    assert list(world.silent()) == ["node-1"]
    world.report("node-1", total=101)  # the informer's resync, or the watch came back
    assert world.silent() == {}


@pytest.mark.unit
def test_a_restarted_kube_proxy_is_no_verdict() -> None:
    world = steady_world()
    world.change(2, counted_by=("node-2", "node-3"))
    world.tick(15)
    world.report_all()
    world.tick(1)
    world.report("node-1", total=100, started=T0)  # a new process, whose count happens to match
    world.report("node-2")
    world.report("node-3")
    world.tick(45)
    world.report_all()
    assert world.silent() == {}


@pytest.mark.unit
def test_without_a_start_time_a_lower_counter_marks_a_restart() -> None:
    world = World()
    for _ in range(3):
        for node in NODES:
            world.report(node, started=None)
        world.tick(5)
    world.change(2, counted_by=("node-2", "node-3"))
    world.tick(15)
    for node in NODES:
        world.report(node, started=None)
    world.tick(1)
    world.report("node-1", total=3, started=None)  # restarted: counting again from its initial list
    world.report("node-1", total=3, started=None)
    world.tick(45)
    world.report("node-1", total=3, started=None)
    assert world.silent() == {}


@pytest.mark.unit
def test_no_counter_no_verdict() -> None:
    world = World()
    for _ in range(3):
        for node in NODES:
            world.rounds[node] += 1
            raw = health(node, world.rounds[node], None)
            world.cluster.set_health(node, raw, world.now)
        world.tick(5)
    world.change(2, counted_by=())
    world.tick(60)
    assert world.silent() == {}
    assert world.cluster.watch.probes == type(world.cluster.watch.probes)(), "nobody to probe"


@pytest.mark.unit
def test_a_replayed_or_first_seen_slice_is_no_probe() -> None:
    world = steady_world()
    world.cluster.set_slice(dns_slice(1, "10.244.1.5"), deleted=False, now=world.now)  # a relist's replay
    other = DnsPods({"10.244.9.9": "ready"}).endpoint_slice()
    other["metadata"].update(name="kube-dns-other", uid="slice-2", generation=7)  # first sight
    world.cluster.set_slice(other, deleted=False, now=world.now)
    assert not world.cluster.watch.probes
    world.cluster.set_slice(other, deleted=True, now=world.now)
    assert len(world.cluster.watch.probes) == 1, "a held slice deleted is a change every kube-proxy sees"


@pytest.mark.unit
def test_the_silence_outlives_the_probes_that_proved_it() -> None:
    """A rollout makes more probes than are kept: the first one missed stays the evidence."""
    world = steady_world()
    world.change(2, counted_by=("node-2", "node-3"))
    after_settling(world)
    for generation in range(3, 30):
        world.change(generation, counted_by=("node-2", "node-3"))
        world.tick(6)
        world.report_all()
    found = world.silent()
    assert list(found) == ["node-1"]
    assert "for 1" in found["node-1"], found  # counted from the first probe, over 100 s ago


# --- through the operator ----------------------------------------------------------------

POLICY = policy(
    actions={"restartKubeProxy": {"enabled": True, "staleAfter": "30s"}},
    guardrails={"minObservation": "5s", "nodeCooldown": "0s", "anomalyMinNodes": 2},
)


@pytest.fixture
async def operator() -> AsyncIterator[tuple[Controller, NodeRepairs, KubeClient, list[datetime]]]:
    async with serve() as api:
        for path in sorted(CRDS.glob("*.yaml")):
            api.register_crd(yaml.safe_load(path.read_text()))
        async with KubeClient(Connection(server=str(api.url).rstrip("/"))) as client:
            clock = [T0]
            controller = Controller(
                client, EventRecorder(client, "proxymedic-operator", "test"), clock=lambda: clock[0]
            )
            await controller.policy_event("ADDED", POLICY)
            controller.service_event("ADDED", dns_service())
            for node in NODES:
                controller.cluster.set_node(
                    {"metadata": {"name": node, "uid": f"uid-{node}", "labels": {}}}, deleted=False
                )
            yield controller, NodeRepairs.of(controller), client, clock
            await controller.close()


@pytest.mark.emulator
async def test_the_operator_warns_of_the_silent_node_and_decides_its_restart(
    operator: tuple[Controller, NodeRepairs, KubeClient, list[datetime]],
) -> None:
    controller, repairs, client, clock = operator
    rounds = dict.fromkeys(NODES, 0)
    totals = dict.fromkeys(NODES, 100)

    async def report_all() -> None:
        for node in NODES:
            rounds[node] += 1
            if await controller.accept_report(node, health(node, rounds[node], totals[node])):
                await repairs.on_report(node)
        await controller.drain()

    async def tick(seconds: float) -> None:
        clock[0] += timedelta(seconds=seconds)
        await repairs.sweep()
        await controller.drain()

    controller.slice_event("ADDED", dns_slice(1, "10.244.1.5"))
    for _ in range(3):
        await report_all()
        await tick(5)
    controller.slice_event("MODIFIED", dns_slice(2, "10.244.1.6"))
    totals["node-2"] += 1
    totals["node-3"] += 1
    for _ in range(12):  # 60 s: the change settles, then staleAfter and the minimum observation pass
        await tick(5)
        await report_all()
    events, _ = await client.list(EVENTS, "default")
    by_reason: dict[str, set[str]] = {}
    for event in events:
        by_reason.setdefault(event["reason"], set()).add(event["involvedObject"]["name"])
    assert by_reason.get("KubeProxyWatchSilent") == {"node-1"}, by_reason
    # The emulated cluster runs no kube-proxy pod: a restart the guardrails allow ends here.
    assert by_reason.get("KubeProxyNotFound") == {"node-1"}, by_reason
    assert "AnomalyBreakerTripped" not in by_reason
