"""A CoreDNS rollout: each dead backend is flushed on every node, once, with one summary Event."""

from __future__ import annotations

import functools
import time

import pytest

from proxymedic.sim.world import World
from tests.scenarios.harness import (
    BUSY_KUBE_PROXY,
    NEW,
    OLD,
    all_summarized,
    events,
    eventually,
    has_state_of,
    queried,
    settled,
    sweeps,
    wait_for_events,
    world,
)

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(60)]


def _cleared(w: World, backend: str) -> bool:
    return not any(has_state_of(w, node, backend) for node in w.nodes)


async def test_rollout_flushes_every_node_before_kube_proxy_does() -> None:
    # kube-proxy is busy (no sync within the test): only ProxyMedic can clear the dead backend.
    # How fast it does is a benchmark figure (bench/rollout.py), not a claim of this test.
    async with world(3, **BUSY_KUBE_PROXY) as w:
        await settled(w)
        w.traffic = True
        await w.add_backend(NEW[0])
        for node in w.nodes.values():
            node.kube_proxy.sync(time.time())  # kube-proxy programs the new pod...
        # ...and the old one starts terminating: not ready, still answering through its lameduck,
        # which lasts until ProxyMedic has cleared it from every node (however long that takes here).
        await w.stop_ready(OLD[0])
        await eventually(lambda: not any(has_state_of(w, name, OLD[0]) for name in w.nodes))
        await w.remove_backend(OLD[0])
        assert all(node.kube_proxy.pending for node in w.nodes.values()), "kube-proxy has not synced yet"
        await queried(w)  # every client queried again after the old pod was gone
        failed = {name: [c.stats.failed for c in node.clients] for name, node in w.nodes.items()}
        assert all(count == 0 for counts in failed.values() for count in counts), f"queries lost: {failed}"
        await wait_for_events(w, "StaleConnectionsFlushed")
        await sweeps(w)
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
        # A rollout whose lameduck lasts until the old pod's state is gone from every node: whether
        # it is gone within a given lameduck is the benchmark's figure (DNS queries lost).
        for old_ip, new_ip in zip(OLD, NEW, strict=True):
            await w.add_backend(new_ip)
            await w.stop_ready(old_ip)
            await eventually(functools.partial(_cleared, w, old_ip))
            await w.remove_backend(old_ip)
        await eventually(lambda: all_summarized(w))
        flushed = await wait_for_events(w, "StaleConnectionsFlushed", count=len(OLD))
        assert sorted(e["message"].split(" left")[0] for e in flushed) == list(OLD)
        assert all(not has_state_of(w, node, ip) for node in w.nodes for ip in OLD)
        assert sum(c.stats.failed for node in w.nodes.values() for c in node.clients) == 0
