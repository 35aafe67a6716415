"""Prevention: the IPVS UDP timeout is set once on every node where it differs."""

from __future__ import annotations

import pytest

from tests.scenarios.harness import (
    ALL_ACTIONS,
    all_summarized,
    eventually,
    policy,
    settled,
    wait_for_events,
    world,
)

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(60)]


async def test_udp_timeout_is_set_where_it_differs() -> None:
    actions = {**ALL_ACTIONS, "ipvsUDPTimeout": {"enabled": True, "timeout": "30s"}}
    async with world(3, spec=policy(actions)) as w:
        await settled(w)
        await eventually(lambda: all(node.model.get_timeouts().udp == 30 for node in w.nodes.values()))
        # A node may have been set by an intent of its own, and each intent's summary Event is posted
        # after it is summarised: wait for every summary, then for one Event per timeout intent.
        await eventually(lambda: all_summarized(w), within=30)
        assert w.controller is not None
        intents = [
            t for t in w.controller.cluster.intents.values() if t.intent.spec.action == "SetIPVSUDPTimeout"
        ]
        done = await wait_for_events(w, "UDPTimeoutSet", count=len(intents))
        assert all("from 300s to 30s (new entries only" in event["message"] for event in done)
        changed = [int(event["message"].split(" of ")[0].rsplit(" ", 1)[-1]) for event in done]
        assert sum(changed) == 3, "each node changed once, whichever intent it came with"
