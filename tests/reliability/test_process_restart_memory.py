"""A restarted operator remembers the kube-proxy restarts of the last hour (operator/restored.py).

Without it, an operator killed after restarting a node's kube-proxy starts with an empty history
and restarts that node again at once, past the policy's cooldown and hourly budget.
"""

from __future__ import annotations

import asyncio

import pytest

from proxymedic.sim.kubeproxy import Stall
from tests.scenarios.harness import OLD, events, eventually, policy, settled, wait_for_events, world

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(90)]


async def test_restarted_operator_keeps_the_node_cooldown_of_a_restart_it_made_before() -> None:
    spec = policy(nodeCooldown="1h")
    async with world(3, spec=spec, sync_period=2.0) as w:
        await settled(w)
        w.stall("node-2", Stall.DEAD_WATCH)
        await w.terminate_backend(OLD[0], lameduck=0.2)
        stalled = w.nodes["node-2"]
        await eventually(lambda: stalled.kube_proxy.restarts == 1, within=20)
        await wait_for_events(w, "KubeProxyRestarted", 1)

        await w.stop_component("operator")
        w.start_operator()
        # kube-proxy's watch dies again; the next change shows it stale once more.
        w.stall("node-2", Stall.DEAD_WATCH)
        await w.terminate_backend(OLD[1], lameduck=0.2)
        async with asyncio.timeout(30):
            while True:
                held = await events(w, "RemediationHeld")
                if any(
                    e["message"].startswith("NodeCooldown") and e["involvedObject"]["name"] == "node-2"
                    for e in held
                ):
                    break
                await asyncio.sleep(0.1)
        assert sum(node.kube_proxy.restarts for node in w.nodes.values()) == 1
        assert len(await wait_for_events(w, "KubeProxyRestarted", 1)) == 1
