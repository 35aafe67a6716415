"""Guardrail storms: half the nodes stale at once, a flapping node, a policy edited while its
intents are in flight, and two policies selecting the same Service."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from proxymedic.kube.resources import INTENTS, POLICIES
from proxymedic.operator.guardrails import ActionKind
from proxymedic.sim.kubeproxy import Stall
from proxymedic.sim.world import World
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

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(90)]


def _busy_kube_proxy(w: World) -> None:
    for node in w.nodes.values():
        node.kube_proxy.sync(time.time())


def _busy_world() -> World:
    return world(3, **BUSY_KUBE_PROXY, spec=policy(nodeCooldown="1h"))


def _breaker(w: World) -> bool:
    return bool(w.controller and w.controller.cluster.policies["coredns"].breaker_tripped)


async def test_half_the_nodes_stale_at_once_trips_the_breaker_once_and_restarts_nothing() -> None:
    async with world(6, sync_period=1.0) as w:
        await settled(w)
        half = ["node-1", "node-2", "node-3"]
        for name in half:
            w.stall(name, Stall.DEAD_WATCH)  # a control-plane problem: every watch died at once
        for ip in NEW:  # a rollout in the middle of it
            await w.add_backend(ip)
        for ip in OLD:
            await w.terminate_backend(ip, lameduck=0.2)
        await eventually(lambda: _breaker(w))
        healthy = [name for name in w.nodes if name not in half]
        await eventually(lambda: not any(has_state_of(w, n, ip) for n in healthy for ip in OLD))
        # Resyncs (re-adding what the stale caches hold), fresh reports and sweeps later.
        await resyncs(w, 2)
        await sensed(w)
        await sweeps(w, 3)
        assert all(node.kube_proxy.restarts == 0 for node in w.nodes.values())
        assert await events(w, "KubeProxyRestarted") == []
        tripped = await events(w, "AnomalyBreakerTripped")
        assert len(tripped) == 1
        assert tripped[0]["type"] == "Warning"
        held = [e for e in await events(w, "RemediationHeld") if e["message"].startswith("AnomalyBreaker")]
        assert len(held) <= len(half), "at most one hold Event per stale node"
        # The storm passes (kube-proxy's watches come back): the breaker resets, once.
        for name in half:
            w.nodes[name].kube_proxy.restart(w.desired(), time.time())
        await eventually(lambda: not _breaker(w))
        await wait_for_events(w, "AnomalyBreakerReset")  # posted after the breaker resets
        await sweeps(w)
        assert len(await events(w, "AnomalyBreakerReset")) == 1
        assert not any(has_state_of(w, n, ip) for n in w.nodes for ip in OLD)
        assert len(await events(w, "AnomalyBreakerTripped")) == 1


async def test_flapping_node_restarts_are_bounded_by_cooldown_and_budget() -> None:
    cooldown, budget = 3.0, 2
    spec = policy(nodeCooldown=f"{cooldown:g}s", hourlyBudget={"perNode": budget, "perCluster": 100})
    async with world(3, sync_period=0.5, spec=spec) as w:
        await settled(w)
        controller = w.controller
        assert controller is not None
        entry = controller.cluster.policies["coredns"]
        flapper = w.nodes["node-1"].kube_proxy
        ips = [f"10.244.101.{i}" for i in range(1, 60)]
        live = list(OLD)
        flaps = held_after_budget = 0
        holds_when_spent: float | None = None

        def programmed(node: str, backend: str) -> bool:
            """Whether the operator's latest report of the node shows the backend's real server."""
            status = controller.cluster.healths.get(node)
            servers = status.virtual_servers if status is not None else []
            return any(rs.ip == backend for vs in servers for rs in vs.real_servers)

        def budget_holds() -> float:
            """Restarts held by the node's cooldown or hourly budget (not by another rule)."""
            get = controller.metrics.registry.get_sample_value
            rules = ("NodeCooldown", "NodeHourlyBudget")
            return sum(get("proxymedic_holds_total", {"rule": rule}) or 0.0 for rule in rules)

        def restarts_held() -> float:
            sample = {"action": str(ActionKind.RESTART_KUBE_PROXY), "result": "held"}
            return controller.metrics.registry.get_sample_value("proxymedic_decisions_total", sample) or 0.0

        # Flap until the budget is spent and a restart was held after that (at most 50 flaps: a hang
        # bound). Each flap waits for the operator's decision on it (a restart or a hold), not a time.
        while held_after_budget == 0 and flaps < 50:
            restarts, holds = flapper.restarts, restarts_held()
            # stale: its watch dies and the Service changes; fresh again once restarted (or not)
            w.stall("node-1", Stall.DEAD_WATCH)
            new, old = ips.pop(0), live.pop(0)
            await w.add_backend(new)
            await w.terminate_backend(old, lameduck=0.1)
            live.append(new)
            flaps += 1
            # The healthy nodes program the new backend within a sync; until the operator has their
            # reports saying so, they too look stale and the anomaly breaker holds every restart.
            await eventually(lambda: all(programmed(n, new) for n in ("node-2", "node-3")))  # noqa: B023
            await eventually(lambda: flapper.restarts > restarts or restarts_held() > holds)  # noqa: B023
            if flapper.restarts > restarts:
                # The next flap starts once the operator has seen the new kube-proxy sync (a fresh
                # report sensed after the restart): stalled again before that, the restart would
                # still be in progress and hold every later one (maxConcurrentKubeProxyRestarts).
                await eventually(lambda: "node-1" not in controller.cluster.restarts, within=30)
            if flapper.restarts >= budget:
                if holds_when_spent is None:
                    holds_when_spent = budget_holds()
                elif budget_holds() > holds_when_spent:
                    held_after_budget += 1
        assert flapper.restarts == budget, (flapper.restarts, budget, flaps)
        # The cooldown on the operator's own clock, the one its guardrails compare.
        restarted_at = sorted(r.at for r in entry.history if r.kind is ActionKind.RESTART_KUBE_PROXY)
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(restarted_at)]
        assert len(restarted_at) == budget
        assert all(gap >= cooldown for gap in gaps), gaps
        assert all(node.kube_proxy.restarts == 0 for name, node in w.nodes.items() if name != "node-1")
        held = {e["message"].split(":")[0] for e in await wait_for_events(w, "RemediationHeld")}
        assert held & {"NodeCooldown", "NodeHourlyBudget"}, held
        print(f"flapping node: {flaps} flaps, {flapper.restarts} restarts (budget {budget})")


async def _open_intents(w: World) -> list[dict[str, Any]]:
    items, _ = await w.client.list(INTENTS)
    return items


@pytest.mark.parametrize(
    "edit",
    [
        {"guardrails": {"dryRun": True}},
        {"services": {"labelSelector": {"matchLabels": {"k8s-app": "something-else"}}}},
        {
            "actions": {
                "flushStaleConnections": {"enabled": False},
                "removeStaleRealServers": {"enabled": False},
            }
        },
    ],
    ids=["dry-run-switched-on", "service-no-longer-selected", "flush-disabled"],
)
async def test_policy_edited_mid_remediation(edit: dict[str, Any]) -> None:
    async with _busy_world() as w:
        await settled(w)
        await w.stop_component("agent:node-3")  # the intent stays in flight on node-3
        for ip in NEW:
            await w.add_backend(ip)
        _busy_kube_proxy(w)
        await w.terminate_backend(OLD[0], lameduck=0.2)
        await eventually(lambda: not any(has_state_of(w, n, OLD[0]) for n in ("node-1", "node-2")))
        assert has_state_of(w, "node-3", OLD[0])
        [in_flight] = [i["metadata"]["name"] for i in await _open_intents(w)]
        # The operator has read node-1's and node-2's results before the edit (else its summary of
        # the withdrawn intent cannot say they changed).
        controller = w.controller
        assert controller is not None
        await eventually(lambda: len(controller.cluster.intents[in_flight].results) == 2)
        await w.client.patch(POLICIES, "coredns", {"spec": edit})
        async with asyncio.timeout(30):
            while await _open_intents(w):  # noqa: ASYNC110  (withdrawn: deleted from the API)
                await asyncio.sleep(0.1)
        w.start_agent("node-3")
        await w.terminate_backend(OLD[1], lameduck=0.2)
        # The operator has judged the change, node-3's agent has listed the intents and reported,
        # and sweeps ran since: whatever the edited policy would still do, it has done.
        await eventually(lambda: OLD[1] not in next(iter(controller.cluster.acted.values()), {OLD[1]}))
        await eventually(lambda: w.agents["node-3"].writes > 0)
        # node-3 still reports the dead backend's real server: long enough for the drift ladder's
        # next rung to be due (the policy's minimum observation, 1 s), then reports and sweeps.
        await asyncio.sleep(1.5)
        await sensed(w)
        await sweeps(w)
        # Nothing the new policy forbids happened after the edit, on any node.
        assert has_state_of(w, "node-3", OLD[0]), (  # what happened instead, should it fail
            [(e["reason"], e["message"][:80]) for e in await events(w)],
            {name: (n.kube_proxy.restarts, n.kube_proxy.syncs) for name, n in w.nodes.items()},
            [(r.intent, r.outcome) for r in w.agents["node-3"].agent.recent_results()],
        )
        assert all(has_state_of(w, n, OLD[1]) for n in w.nodes)
        assert all(node.kube_proxy.restarts == 0 for node in w.nodes.values())
        withdrawn = [e for e in await events(w, "StaleConnectionsFlushed") if "withdrawn" in e["message"]]
        assert len(withdrawn) == 1, [e["message"] for e in await events(w)]
        assert "2 of 3 nodes changed" in withdrawn[0]["message"]
        applied = [r.intent for r in w.agents["node-3"].agent.recent_results() if r.outcome != "DryRun"]
        assert in_flight not in applied, "node-3 never applied the withdrawn intent"


async def test_two_policies_on_one_service_first_by_name_governs_through_edits() -> None:
    async with _busy_world() as w:
        await settled(w)
        first = {
            "apiVersion": "proxymedic.io/v1alpha1",
            "kind": "ProxyHealthPolicy",
            "metadata": {"name": "aaa-dns"},
        }
        await w.client.create(POLICIES, {**first, "spec": policy(dryRun=True)})
        await eventually(lambda: bool(w.controller and "aaa-dns" in w.controller.cluster.policies))

        async def degraded(name: str) -> dict[str, Any]:
            status = (await w.client.get(POLICIES, name)).get("status") or {}
            return next((c for c in status.get("conditions", []) if c["type"] == "Degraded"), {})

        async with asyncio.timeout(30):
            while (await degraded("coredns")).get("reason") != "Overlap":  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        assert "kube-system/kube-dns" in (await degraded("coredns"))["message"]
        for ip in NEW:
            await w.add_backend(ip)
        _busy_kube_proxy(w)
        # aaa-dns governs (first by name) and is dry-run: decided, reported, nothing changed.
        await w.terminate_backend(OLD[0], lameduck=0.2)
        dry = []
        async with asyncio.timeout(30):
            while not (dry := await events(w, "DryRun")):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        assert "policy aaa-dns" in str(dry) or all(has_state_of(w, n, OLD[0]) for n in w.nodes)
        assert await events(w, "StaleConnectionsFlushed") == []
        # Mid-remediation, aaa-dns stops selecting the Service: coredns governs from now on, and its
        # safety net finds what the dry-run left; the next change is its to repair.
        await w.client.patch(
            POLICIES, "aaa-dns", {"spec": {"services": {"labelSelector": {"matchLabels": {"k8s-app": "x"}}}}}
        )
        await w.terminate_backend(OLD[1], lameduck=0.2)
        await eventually(lambda: not any(has_state_of(w, n, ip) for n in w.nodes for ip in OLD))
        assert all(node.kube_proxy.pending for node in w.nodes.values()), "ProxyMedic did it, not kube-proxy"
        async with asyncio.timeout(30):
            while (await degraded("coredns")).get("status") != "False":  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        intents = [i["spec"]["policyName"] for i in await _open_intents(w) if not i["spec"].get("dryRun")]
        assert set(intents) <= {"coredns"}, intents
        assert all(node.kube_proxy.restarts == 0 for node in w.nodes.values())
