"""A node whose conntrack table fills up: one Warning Event, and a raise within the policy's ceiling."""

from __future__ import annotations

import ipaddress
import time

import pytest

from proxymedic.dataplane.types import Endpoint
from proxymedic.sim.world import NodeSpec
from tests.scenarios.harness import ALL_ACTIONS, eventually, policy, settled, wait_for_events, world

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(60)]


async def test_conntrack_pressure_is_reported_and_the_table_raised_once() -> None:
    actions = {**ALL_ACTIONS, "raiseConntrackMax": {"enabled": True, "ceiling": 1100, "stepPercent": 25}}
    nodes = [NodeSpec("node-1", conntrack_max=1024), NodeSpec("node-2")]
    async with world(nodes, spec=policy(actions), sync_period=3600.0) as w:
        model = w.nodes["node-1"].model
        backend = Endpoint(ipaddress.ip_address("10.244.100.10"), 53)
        for port in range(1000):  # 98% full: long-lived flows from elsewhere
            model.conntrack.track(
                (ipaddress.ip_address("10.244.50.1"), port, ipaddress.ip_address("10.96.0.10"), 53),
                backend,
                True,
                time.time() + 3600,
            )
        await settled(w)
        pressure = await wait_for_events(w, "ConntrackPressure")
        assert pressure[0]["involvedObject"]["name"] == "node-1"
        assert "98% full (1000 of 1024, threshold 90%)" in pressure[0]["message"]
        await eventually(lambda: model.read("net.netfilter.nf_conntrack_max") == 1100, within=10)
        raised = await wait_for_events(w, "ConntrackMaxRaised")
        assert "set net.netfilter.nf_conntrack_max from 1024 to 1100" in raised[0]["message"]
        # 91% of 1100 is still above the threshold, but the ceiling is reached: no further raise.
        assert len(await wait_for_events(w, "ConntrackPressure")) == 1
