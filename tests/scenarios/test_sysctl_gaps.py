"""A node with expire_nodest_conn=0 that no policy can fix is said once, with what fixes it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proxymedic.kube.resources import POLICIES
from proxymedic.sim.world import NodeSpec, World
from tests.scenarios.harness import ALL_ACTIONS, eventually, policy, settled, wait_for_events, world

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(90)]

# The chart's default: enforceSysctls off, because the agent may not write sysctls.
DEFAULT_INSTALL = {key: value for key, value in ALL_ACTIONS.items() if key != "enforceSysctls"}


async def condition(w: World) -> dict[str, Any]:
    body = await w.client.get(POLICIES, "coredns")
    found = [c for c in (body.get("status") or {}).get("conditions", []) if c["type"] == "SysctlNotEnforced"]
    return found[0] if found else {}


async def reads(w: World, status: str, reason: str, within: float = 15.0) -> dict[str, Any]:
    """The policy's condition, once it has this status and reason."""
    async with asyncio.timeout(within):
        while True:
            latest = await condition(w)
            if (latest.get("status"), latest.get("reason")) == (status, reason):
                return latest
            await asyncio.sleep(0.1)


async def test_the_default_install_says_once_what_expire_nodest_conn_0_costs_and_what_fixes_it() -> None:
    nodes = [
        NodeSpec("node-1"),
        NodeSpec("node-2", expire_nodest_conn=0, sysctls_writable=False),
    ]
    async with world(nodes, spec=policy(DEFAULT_INSTALL)) as w:
        await settled(w)
        (event,) = await wait_for_events(w, "SysctlNotEnforced")
        assert event["type"] == "Warning"
        assert event["involvedObject"]["name"] == "node-2"
        message = event["message"]
        assert message.startswith("net.ipv4.vs.expire_nodest_conn=0 on node-2 and ProxyMedic cannot set it: ")
        assert "no policy selecting node-2 enables enforceSysctls (policy coredns)" in message
        assert "until the IPVS UDP timeout (300 s)" in message
        assert "--set agent.sysctlWrites=true" in message
        assert "sysctl -w net.ipv4.vs.expire_nodest_conn=1" in message
        held = await reads(w, "True", "EnforceSysctlsDisabled")
        assert "(node-2)" in held["message"]

        # The policy enables the action, but the agent still cannot write: the gap stays open with
        # its new cause, and is not announced a second time.
        actions = {"spec": {"actions": {"enforceSysctls": {"enabled": True}}}}
        await w.client.patch(POLICIES, "coredns", actions)
        held = await reads(w, "True", "AgentCannotWriteSysctls")
        assert "the agent on node-2 cannot write sysctls" in held["message"]
        assert len(await wait_for_events(w, "SysctlNotEnforced")) == 1

        # A privileged agent (agent.sysctlWrites=true): ProxyMedic sets the sysctl and the gap closes.
        await w.stop_component("agent:node-2")
        w.nodes["node-2"].spec.sysctls_writable = True
        w.start_agent("node-2")
        await wait_for_events(w, "SysctlsEnforced")
        await eventually(lambda: w.nodes["node-2"].model.read("net.ipv4.vs.expire_nodest_conn") == 1)
        await reads(w, "False", "NoGap")
        assert len(await wait_for_events(w, "SysctlNotEnforced")) == 1


async def test_no_gap_where_the_policy_sets_the_sysctl() -> None:
    async with world([NodeSpec("node-1", expire_nodest_conn=0)], spec=policy()) as w:
        await settled(w)
        await wait_for_events(w, "SysctlsEnforced")
        assert (await reads(w, "False", "NoGap"))["message"] == ""
        assert await wait_for_events(w, "SysctlNotEnforced", count=0) == []
