"""Guardrails in a running cluster: dry-run, pause, cooldown and budgets each hold, with the right Event."""

from __future__ import annotations

import pytest

from proxymedic.kube.resources import POLICIES
from proxymedic.sim.world import NodeSpec
from tests.scenarios.harness import (
    BUSY_KUBE_PROXY,
    NEW,
    OLD,
    events,
    eventually,
    has_state_of,
    policy,
    sensed,
    settled,
    sweeps,
    wait_for_events,
    world,
)

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(60)]


async def test_dry_run_reports_and_changes_nothing() -> None:
    async with world(2, **BUSY_KUBE_PROXY, spec=policy(dryRun=True)) as w:
        await settled(w)
        await w.terminate_backend(OLD[0], lameduck=0.2)
        dry = await wait_for_events(w, "DryRun")
        assert "2 of 2 nodes would act (dry-run)" in dry[0]["message"]
        assert "nothing changed, would have: 2 real servers removed" in dry[0]["message"]
        assert all(has_state_of(w, node, OLD[0]) for node in w.nodes), "nothing changed on any node"
        results = [r.outcome for runner in w.agents.values() for r in runner.agent.recent_results()]
        assert results == ["DryRun", "DryRun"]


async def test_pause_annotation_holds_every_decision() -> None:
    async with world(2, **BUSY_KUBE_PROXY) as w:
        await settled(w)
        await w.client.patch(
            POLICIES, "coredns", {"metadata": {"annotations": {"proxymedic.io/paused": "true"}}}
        )
        await eventually(
            lambda: (
                w.controller is not None
                and w.controller.cluster.policies["coredns"].policy is not None
                and w.controller.cluster.policies["coredns"].policy.paused
            )
        )
        await w.terminate_backend(OLD[0], lameduck=0.2)
        held = await wait_for_events(w, "RemediationHeld")
        assert held[0]["message"].startswith("Paused: policy coredns is paused")
        assert held[0]["involvedObject"]["kind"] == "Service"
        assert all(has_state_of(w, node, OLD[0]) for node in w.nodes)
        assert w.controller is not None
        assert w.controller.cluster.intents == {}


async def test_cluster_budget_holds_the_second_flush() -> None:
    spec = policy(hourlyBudget={"perNode": 1, "perCluster": 1})
    async with world(2, **BUSY_KUBE_PROXY, spec=spec) as w:
        await settled(w)
        await w.add_backend(NEW[0])
        await w.terminate_backend(OLD[0], lameduck=0.2)
        await wait_for_events(w, "StaleConnectionsFlushed")
        await w.terminate_backend(OLD[1], lameduck=0.2)
        held = await wait_for_events(w, "RemediationHeld")
        assert held[0]["message"].startswith("ClusterHourlyBudget: FlushStaleBackends: 1 in the cluster")
        assert "budget is 1" in held[0]["message"]
        assert not any(has_state_of(w, node, OLD[0]) for node in w.nodes)
        assert all(has_state_of(w, node, OLD[1]) for node in w.nodes)


async def test_node_cooldown_holds_a_second_tuning_action() -> None:
    spec = policy(nodeCooldown="1h")
    nodes = [NodeSpec("node-1", expire_nodest_conn=0)]
    async with world(nodes, spec=spec) as w:
        await settled(w)
        model = w.nodes["node-1"].model
        await eventually(lambda: model.read("net.ipv4.vs.expire_nodest_conn") == 1)
        model.write("net.ipv4.vs.expire_quiescent_template", 0)  # something resets another sysctl
        held = await wait_for_events(w, "RemediationHeld")
        assert held[0]["message"].startswith(
            "NodeCooldown: EnforceSysctls on node node-1: the previous one ran"
        )
        assert "cooldown is 1h" in held[0]["message"]
        assert held[0]["involvedObject"] == {
            "apiVersion": "v1",
            "kind": "Node",
            "name": "node-1",
            "uid": held[0]["involvedObject"]["uid"],
        }
        # Fresh reports of the drift, and sweeps that judged them, later: still held.
        await sensed(w)
        await sweeps(w)
        assert model.read("net.ipv4.vs.expire_quiescent_template") == 0
        assert len(await events(w, "SysctlsEnforced")) == 1
