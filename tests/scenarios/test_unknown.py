"""A kube-proxy whose metrics cannot be read is Unknown: reported as such, never a reason to act."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proxymedic.kube.resources import NODE_HEALTHS
from tests.scenarios.harness import sensed, settled, sweeps, world

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(60)]


async def test_unreachable_metrics_are_unknown_and_trigger_nothing() -> None:
    async with world(2, agent_stale_after=1.0, agent_settle=0.2) as w:
        await settled(w)
        w.nodes["node-1"].metrics_unreachable = True
        w.nodes["node-1"].kube_proxy.last_sync = 0.0  # would look ancient, if anyone could read it

        async def reported_unknown() -> dict[str, Any]:
            while True:
                obj = await w.client.get(NODE_HEALTHS, "node-1")
                if obj["status"]["kubeProxy"]["freshness"] == "Unknown":
                    return obj
                await asyncio.sleep(0.1)

        async with asyncio.timeout(30):
            obj = await reported_unknown()
        assert "metrics unavailable" in obj["status"]["kubeProxy"]["reason"]
        assert obj["status"]["kubeProxy"]["healthz"] == "Unknown"
        # Time for the Unknown verdict to outlast the agent's staleAfter (1 s) and the policy's
        # minimum observation (1 s); then the agents and the operator must have looked again, so
        # "nothing happened" is a judgement that was made, not one that had no time to be.
        await asyncio.sleep(1.5)
        await sensed(w)
        await sweeps(w)
        assert w.nodes["node-1"].kube_proxy.restarts == 0
        kinds = {e["reason"] for e in await w.events()}
        assert not kinds & {"KubeProxySyncStale", "KubeProxyRestarted", "RemediationHeld"}
