"""Process faults: two operators at once (only one acts, the other takes over when it goes), and an
agent that restarts over and over during a rollout."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from proxymedic.operator.controller import ControllerSettings
from proxymedic.operator.handlers import OperatorOptions
from proxymedic.sim.world import KOPF_PEERINGS, World
from tests.scenarios.harness import (
    NEW,
    OLD,
    all_summarized,
    events,
    eventually,
    has_state_of,
    policy,
    queried,
    settled,
    wait_for_events,
    world,
)

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(90)]


def _peer(instance: str, priority: int) -> OperatorOptions:
    return OperatorOptions(
        standalone=False,
        priority=priority,
        instance=instance,
        housekeeping_interval=0.2,
        controller=ControllerSettings(coalesce_window=0.05),
    )


def _busy_kube_proxy(w: World) -> None:
    """kube-proxy programs what exists now, then has no sync left for the rest of the test."""
    for node in w.nodes.values():
        node.kube_proxy.sync(time.time())


async def _peers(w: World) -> dict[str, object]:
    """The operators recorded in the peering object (Kopf keeps one status key per operator)."""
    peering = await w.client.get(KOPF_PEERINGS, "proxymedic")
    return dict(peering.get("status") or {})


async def _instances(w: World) -> set[str]:
    return {str(e.get("reportingInstance")) for e in await events(w) if e.get("source", {}).get("component")}


async def test_two_operators_only_the_active_one_acts_and_the_other_takes_over() -> None:
    spec = policy(nodeCooldown="1h")
    async with world(
        3,
        min_sync_period=3600.0,
        sync_period=3600.0,
        agent_stale_after=3600.0,
        spec=spec,
        operator=_peer("op-a", 100),
    ) as w:
        await settled(w)
        w.start_operator(_peer("op-b", 50), key="operator-b")
        await eventually(lambda: w.controller_of("operator-b") is not None)
        # op-b has announced itself in the peering object, which already holds op-a's record: the
        # peering event that carries both is the one on which Kopf pauses op-b.
        async with asyncio.timeout(30):
            while len(await _peers(w)) < 2:  # noqa: ASYNC110  (the records live in the API)
                await asyncio.sleep(0.1)
        await w.add_backend(NEW[0])
        _busy_kube_proxy(w)
        await w.terminate_backend(OLD[0], lameduck=0.3)
        await eventually(lambda: not any(has_state_of(w, n, OLD[0]) for n in w.nodes))
        await eventually(lambda: all_summarized(w))
        await wait_for_events(w, "StaleConnectionsFlushed")
        active, standby = w.controller, w.controller_of("operator-b")
        assert active is not None
        assert standby is not None
        assert set(standby.cluster.intents) <= set(active.cluster.intents), "the standby decided nothing"
        assert await _instances(w) == {"op-a"}, "only the active operator posted anything"
        flushed = await events(w, "StaleConnectionsFlushed")
        assert len(flushed) == 1, [e["message"] for e in flushed]

        # The active operator goes away; the standby resumes and repairs the next change alone.
        await w.stop_component("operator")
        await w.add_backend(NEW[1])
        _busy_kube_proxy(w)
        await w.terminate_backend(OLD[1], lameduck=0.3)
        await eventually(lambda: not any(has_state_of(w, n, OLD[1]) for n in w.nodes))
        assert all(node.kube_proxy.pending for node in w.nodes.values()), "ProxyMedic did it, not kube-proxy"
        async with asyncio.timeout(30):
            while "op-b" not in await _instances(w):  # noqa: ASYNC110  (the Events live in the API)
                await asyncio.sleep(0.1)
        by_b = [e for e in await events(w) if e.get("reportingInstance") == "op-b"]
        assert any(OLD[1] in e["message"] for e in by_b), [e["message"] for e in by_b]
        assert all(node.kube_proxy.restarts == 0 for node in w.nodes.values())


async def test_agent_restarting_over_and_over_during_a_rollout() -> None:
    rng = random.Random(7)
    async with world(
        3,
        min_sync_period=3600.0,
        sync_period=3600.0,
        agent_stale_after=3600.0,
        spec=policy(nodeCooldown="1h"),
    ) as w:
        await settled(w)
        w.traffic = True
        restarts = 0

        async def flapping_agent() -> None:
            nonlocal restarts
            while True:
                await asyncio.sleep(rng.uniform(0.1, 0.6))
                await w.stop_component("agent:node-2")
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                w.start_agent("node-2")
                restarts += 1

        flapper = asyncio.get_running_loop().create_task(flapping_agent())
        try:
            for ip in NEW:
                await w.add_backend(ip)
            _busy_kube_proxy(w)
            for ip in OLD:
                await w.terminate_backend(ip, lameduck=0.3)
                await asyncio.sleep(0.5)
            await eventually(lambda: restarts >= 8)
        finally:
            flapper.cancel()
            with pytest.raises(asyncio.CancelledError):
                await flapper
        if "agent:node-2" not in w._components:
            w.start_agent("node-2")
        await eventually(lambda: not any(has_state_of(w, n, ip) for n in w.nodes for ip in OLD))
        model = w.nodes["node-2"].model
        programmed = {str(rs.endpoint.ip) for vs in model.list_services() for rs in vs.real_servers}
        assert set(NEW) <= programmed, "re-applied intents never touched a live backend"
        await eventually(lambda: all_summarized(w))
        flushed = await wait_for_events(w, "StaleConnectionsFlushed", count=len(OLD))
        assert {e["message"].split(" left")[0] for e in flushed} == set(OLD)
        assert all(node.kube_proxy.restarts == 0 for node in w.nodes.values())
        failed_before = sum(c.stats.failed for c in w.nodes["node-2"].clients)
        await queried(w)
        assert sum(c.stats.failed for c in w.nodes["node-2"].clients) == failed_before, "node-2 answers again"
        print(f"agent node-2 restarted {restarts} times")
