"""Agents look up the virtual servers the policies list, and nothing else of their node's table."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from proxymedic.dataplane.types import Endpoint, L4Protocol, ServiceKey
from proxymedic.kube.resources import NODE_HEALTHS, POLICIES
from proxymedic.sim.world import DNS_VIP
from tests.scenarios.harness import BUSY_KUBE_PROXY, DNS, eventually, sensed, settled, world

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(60)]

UNSELECTED = ServiceKey(L4Protocol.UDP, ipaddress.ip_address("10.96.44.44"), 5353)


async def _reported(w: Any) -> set[tuple[str, int]]:
    obj = await w.client.get(NODE_HEALTHS, "node-1")
    return {(vs["vip"], vs["port"]) for vs in (obj.get("status") or {}).get("virtualServers") or []}


async def test_the_agent_reports_only_what_the_policy_lists_and_follows_the_list() -> None:
    async with world(1, **BUSY_KUBE_PROXY) as w:
        await settled(w)
        model = w.nodes["node-1"].model
        model.add_service(UNSELECTED)
        model.add_real_server(UNSELECTED, Endpoint(ipaddress.ip_address("10.244.44.4"), 5353))
        sense = w.agents["node-1"].agent.settings.sense

        # The operator lists the Service's virtual server; the agent reads it and looks up that alone.
        await eventually(lambda: sense.virtual_servers == frozenset({DNS}))
        status = (await w.client.get(POLICIES, "coredns")).get("status") or {}
        assert status["sensing"] == {
            "virtualServers": [{"address": DNS_VIP, "port": 53, "protocol": "UDP"}],
            "nodePorts": [],
            "complete": True,
        }
        await sensed(w, 2)
        assert await _reported(w) == {(DNS_VIP, 53)}, "the unselected virtual server is never looked up"

        await w.client.delete(POLICIES, "coredns")
        await eventually(lambda: sense.virtual_servers == frozenset())
        await sensed(w, 2)
        assert await _reported(w) == set()
