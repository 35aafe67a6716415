"""A CoreDNS rollout: each dead backend is flushed on every node, once, with one summary Event."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.scenarios.harness import NEW, OLD, events, eventually, has_state_of, settled, world

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(60)]


async def test_rollout_flushes_every_node_before_kube_proxy_does() -> None:
    # kube-proxy is busy (a sync at most every 20 s): only ProxyMedic can clear the dead backends in time.
    async with world(3, min_sync_period=20.0) as w:
        await settled(w)
        w.traffic = True
        await w.add_backend(NEW[0])
        for node in w.nodes.values():
            node.kube_proxy.sync(time.time())  # kube-proxy programs the new pod...
        await w.terminate_backend(OLD[0], lameduck=1.0)
        # ...and has no sync left for 20 s: the dead backend is gone from every node long before.
        await eventually(lambda: not any(has_state_of(w, name, OLD[0]) for name in w.nodes), within=5)
        assert all(node.kube_proxy.pending for node in w.nodes.values()), "kube-proxy has not synced yet"
        failed_before = {name: [c.stats.failed for c in node.clients] for name, node in w.nodes.items()}
        await asyncio.sleep(1.0)
        failed_after = {name: [c.stats.failed for c in node.clients] for name, node in w.nodes.items()}
        assert failed_after == failed_before, "clients stopped failing"
        assert sum(failed_after[name][i] for name in failed_after for i in range(2)) == 0, "no query was lost"
        flushed = await events(w, "StaleConnectionsFlushed")
        assert len(flushed) == 1, [e["message"] for e in flushed]
        message = flushed[0]["message"]
        assert f"{OLD[0]} left kube-system/kube-dns (10.96.0.10:53/UDP)" in message
        assert "3 of 3 nodes changed" in message
        assert flushed[0]["involvedObject"] == {
            "apiVersion": "v1",
            "kind": "Service",
            "name": "kube-dns",
            "namespace": "kube-system",
            "uid": flushed[0]["involvedObject"]["uid"],
        }


async def test_one_summary_event_per_service_change() -> None:
    async with world(2) as w:
        await settled(w)
        w.traffic = True
        await w.rollout(NEW, lameduck=0.5, surge_wait=0.3)
        await eventually(
            lambda: (
                w.controller is not None and all(t.summarized for t in w.controller.cluster.intents.values())
            )
        )
        flushed = await events(w, "StaleConnectionsFlushed")
        assert sorted(e["message"].split(" left")[0] for e in flushed) == list(OLD)
        assert all(not has_state_of(w, node, ip) for node in w.nodes for ip in OLD)
        assert sum(c.stats.failed for node in w.nodes.values() for c in node.clients) == 0
