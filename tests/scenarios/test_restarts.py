"""Restarts: an operator killed mid-rollout leaves no dead backend unflushed; a restarted agent
re-applies the intent it missed."""

from __future__ import annotations

import pytest

from tests.scenarios.harness import (
    BUSY_KUBE_PROXY,
    OLD,
    all_summarized,
    events,
    eventually,
    has_state_of,
    settled,
    sweeps,
    wait_for_events,
    world,
)

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(60)]


async def test_operator_restarted_mid_rollout_flushes_what_it_missed() -> None:
    async with world(2, **BUSY_KUBE_PROXY) as w:
        await settled(w)
        await w.stop_component("operator")
        await w.terminate_backend(OLD[0], lameduck=0.2)  # the Service change happens while it is down
        assert all(has_state_of(w, node, OLD[0]) for node in w.nodes), "kube-proxy is too busy to sync"
        w.start_operator()
        await eventually(lambda: not any(has_state_of(w, node, OLD[0]) for node in w.nodes), within=15)
        assert all(node.kube_proxy.pending for node in w.nodes.values()), "it was ProxyMedic, not kube-proxy"
        removed = await wait_for_events(w, "StaleRealServerRemoved", count=len(w.nodes))
        assert {e["message"].split(" left")[0] for e in removed} == {OLD[0]}
        assert all("1 of 1 nodes changed" in e["message"] for e in removed), [e["message"] for e in removed]


async def test_restarted_agent_reapplies_the_intent_it_missed() -> None:
    async with world(2, **BUSY_KUBE_PROXY) as w:
        await settled(w)
        await w.stop_component("agent:node-2")
        await w.terminate_backend(OLD[0], lameduck=0.2)
        await eventually(lambda: not has_state_of(w, "node-1", OLD[0]))
        assert has_state_of(w, "node-2", OLD[0]), "nobody applied it on node-2 yet"
        w.start_agent("node-2")
        await eventually(lambda: not has_state_of(w, "node-2", OLD[0]))
        await eventually(lambda: all_summarized(w))
        # The summary Event is posted after the intent is marked summarised: wait for it, then let
        # a sweep run so that a second summary, if the operator were to post one, would be there.
        await wait_for_events(w, "StaleConnectionsFlushed")
        await sweeps(w)
        flushed = await events(w, "StaleConnectionsFlushed")
        assert len(flushed) == 1, [e["message"] for e in flushed]
        assert "2 of 2 nodes changed" in flushed[0]["message"]
