"""A stalled kube-proxy: ProxyMedic removes its stale real server, sees it come back, restarts it once;
and when most nodes look stale at once, nothing is restarted and one Warning Event says why."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import pytest

from proxymedic.sim.kubeproxy import Stall
from proxymedic.sim.world import NodeSpec
from tests.scenarios.harness import (
    NEW,
    OLD,
    events,
    eventually,
    has_state_of,
    resyncs,
    sensed,
    settled,
    sweeps,
    wait_for_events,
    world,
)

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(90)]


def _event_time(event: Mapping[str, Any]) -> int:
    """An Event's firstTimestamp in Unix seconds."""
    stamp = datetime.datetime.strptime(str(event["firstTimestamp"]), "%Y-%m-%dT%H:%M:%SZ")
    return int(stamp.replace(tzinfo=datetime.UTC).timestamp())


async def test_dead_watch_is_repaired_by_one_restart() -> None:
    # The periodic resync (2 s) re-adds whatever ProxyMedic removes: proof of a stale cache.
    async with world(3, sync_period=2.0) as w:
        await settled(w)
        w.stall("node-2", Stall.DEAD_WATCH)
        w.traffic = True
        await w.terminate_backend(OLD[0], lameduck=0.2)
        stalled = w.nodes["node-2"].kube_proxy
        await eventually(lambda: stalled.restarts == 1)
        # Removed by the Service's flush intent on every node (or by the ladder on node-2), then
        # put back by the stalled kube-proxy's resync, and kept: that is the restart's evidence.
        removed = [
            e
            for e in await events(w)
            if e["reason"] in ("StaleConnectionsFlushed", "StaleRealServerRemoved")
            and OLD[0] in e["message"]
            and "removed" in e["message"]
        ]
        assert removed, "the stale real server was removed before the restart"
        restarted = await wait_for_events(w, "KubeProxyRestarted")
        assert len(restarted) == 1
        assert restarted[0]["involvedObject"]["name"] == "node-2"
        assert "re-added real server 10.244.100.10" in restarted[0]["message"]
        await eventually(lambda: not has_state_of(w, "node-2", OLD[0]))
        # Resyncs, fresh reports and sweeps later: still exactly one restart.
        await resyncs(w)
        await sensed(w)
        await sweeps(w)
        assert stalled.restarts == 1
        assert len(await events(w, "KubeProxyRestarted")) == 1
        assert all(node.kube_proxy.restarts == 0 for name, node in w.nodes.items() if name != "node-2")


async def test_hung_kube_proxy_is_reported_stale_and_restarted() -> None:
    # healthz and the metrics give it away: work queued after the last sync, never synced.
    async with world(3, agent_stale_after=1.0, agent_settle=0.5) as w:
        await settled(w)
        w.stall("node-1", Stall.HUNG)
        hung_since = int(w.nodes["node-1"].kube_proxy.last_sync)  # Event times have whole seconds
        await w.terminate_backend(OLD[0], lameduck=0.2)  # queued; ProxyMedic clears the dead backend
        hung = w.nodes["node-1"].kube_proxy
        await eventually(lambda: not has_state_of(w, "node-1", OLD[0]))
        await eventually(lambda: hung.restarts == 1)
        restarted = await wait_for_events(w, "KubeProxyRestarted")
        # Not before the policy's staleAfter (10 s) since the last sync, on the operator's clock.
        assert _event_time(restarted[0]) - hung_since >= 10, (restarted[0], hung_since)
        stale = await events(w, "KubeProxySyncStale")
        assert [e["involvedObject"]["name"] for e in stale] == ["node-1"]
        assert "with work queued" in stale[0]["message"]
        restarted = await events(w, "KubeProxyRestarted")
        assert len(restarted) == 1
        assert "with work queued" in restarted[0]["message"]


async def test_anomaly_breaker_holds_restarts_when_most_nodes_look_stale() -> None:
    nodes = [NodeSpec(f"node-{i}") for i in range(1, 5)]
    async with world(nodes, sync_period=2.0) as w:
        await settled(w)
        for name in ("node-1", "node-2", "node-3"):
            w.stall(name, Stall.DEAD_WATCH)  # a control-plane problem, not three broken nodes
        await w.add_backend(NEW[0])
        await eventually(
            lambda: bool(
                w.controller and any(e.breaker_tripped for e in w.controller.cluster.policies.values())
            ),
        )
        # Resyncs (each re-adds what was removed: more evidence), fresh reports and sweeps later.
        await resyncs(w)
        await sensed(w)
        await sweeps(w)
        assert all(node.kube_proxy.restarts == 0 for node in w.nodes.values())
        assert await events(w, "KubeProxyRestarted") == []
        tripped = await events(w, "AnomalyBreakerTripped")
        assert len(tripped) == 1
        assert tripped[0]["type"] == "Warning"
        assert "3 of 4 nodes look stale at once" in tripped[0]["message"]
