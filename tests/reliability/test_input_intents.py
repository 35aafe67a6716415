"""Hostile intents at the agent: refused with the field and the reason, or executed safely; never a crash.

Every case runs through the real ``NodeAgent.on_intent`` and executor on a modelled node holding a
dead backend (3 stale flows, a stale real server) and a live one (1 flow). Whatever the intent, the
live backend keeps its real server and its flow, and the agent keeps working: a valid intent after
the hostile one is still applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxymedic.agent.agent import AgentSettings, NodeAgent
from proxymedic.agent.executor import NO_IPVS_NOTE, execute
from proxymedic.agent.node import NodeDataplane
from proxymedic.agent.runner import AgentRunner
from proxymedic.api.intent import RemediationIntent
from proxymedic.dataplane.conntrack import NetlinkConntrack
from proxymedic.kube.client import KubeClient, WatchEvent
from proxymedic.kube.resources import Resource
from proxymedic.sim.kernel import ModelledNode
from tests.agent.test_executor import DEAD, LIVE, connections_to, node
from tests.reliability.input_intents import (
    EXECUTED,
    IGNORED,
    SKIPPED,
    Ignored,
    base,
)

pytestmark = pytest.mark.unit

HYPOTHESIS_EXAMPLES = 300
AGENT_LOG = "proxymedic.agent"


def live_untouched(model: ModelledNode) -> bool:
    present = {rs.endpoint.ip for vs in model.list_services() for rs in vs.real_servers}
    return LIVE in present and connections_to(model, LIVE) == 1


def new_agent() -> tuple[NodeAgent, ModelledNode]:
    dp, model = node()
    agent = NodeAgent(AgentSettings(node_name="node-1"), dp)
    agent.node_labels = {"kubernetes.io/hostname": "node-1"}
    return agent, model


async def still_works(agent: NodeAgent, model: ModelledNode) -> None:
    """A valid intent after the hostile one is applied: the agent kept running."""
    good = base()
    good["metadata"].update(name="after-the-storm", uid="uid-good")
    result = await agent.on_intent(good)
    assert result is not None
    assert result.outcome == "Applied", result.message
    assert connections_to(model, DEAD) == 0
    assert live_untouched(model)


@pytest.mark.parametrize(("build", "expected"), IGNORED.values(), ids=IGNORED.keys())
async def test_malformed_intents_are_ignored_with_the_reason(
    build: Callable[[], Any], expected: Ignored, caplog: pytest.LogCaptureFixture
) -> None:
    agent, model = new_agent()
    raw = build()
    caplog.set_level(logging.WARNING, AGENT_LOG)
    assert await agent.on_intent(raw) is None  # how fast: bench/hostile_intents.py
    warnings = [r.getMessage() for r in caplog.records if r.name == AGENT_LOG]
    assert len(warnings) == 1, warnings
    line = warnings[0]
    assert line.startswith("ignoring malformed intent"), line
    assert f"{expected.field}: " in line, line
    assert expected.reason in line, line
    assert len(line) < 2048, f"a hostile value flooded the log: {len(line)} characters"
    assert connections_to(model, DEAD) == 3, "nothing was touched"
    assert live_untouched(model)
    assert await agent.on_intent(raw) is None
    assert len([r for r in caplog.records if r.name == AGENT_LOG]) == 1, "logged once, not on every event"
    await still_works(agent, model)


@pytest.mark.parametrize("build", SKIPPED.values(), ids=SKIPPED.keys())
async def test_expired_or_foreign_intents_are_skipped(build: Callable[[], Any]) -> None:
    agent, model = new_agent()
    assert await agent.on_intent(build()) is None
    assert connections_to(model, DEAD) == 3
    assert live_untouched(model)
    await still_works(agent, model)


@pytest.mark.parametrize(("build", "outcome", "words"), EXECUTED.values(), ids=EXECUTED.keys())
async def test_hostile_but_valid_intents_never_touch_a_live_backend(
    build: Callable[[], Any], outcome: str, words: str
) -> None:
    agent, model = new_agent()
    result = await agent.on_intent(build())  # how fast: bench/hostile_intents.py
    assert result is not None
    assert result.outcome == outcome, result.message
    assert words in result.message
    assert live_untouched(model)


async def test_foreign_families_never_reach_the_kernel_adapter() -> None:
    """The real ctnetlink adapter refuses a VIP and a backend of different families; the executor
    must not ask it (a dual-stack intent pairs every VIP with backends of both families)."""
    adapter = NetlinkConntrack()
    with pytest.raises(ValueError, match="address families differ"):
        adapter.delete_udp_entries(ipaddress.ip_address("10.96.0.10"), 53, ipaddress.ip_address("fd00::5"))
    dp, _ = node()
    kernel_conntrack = NodeDataplane(
        ipvs=None, connections=None, conntrack=adapter, sysctls=dp.sysctls, probe=dp.probe, clock=dp.clock
    )
    for raw in (EXECUTED["ipv6-dead-for-ipv4-vip"][0](), EXECUTED["ipv4-dead-for-ipv6-vip"][0]()):
        result = await execute(RemediationIntent.model_validate(raw), kernel_conntrack)
        # No IPVS here (ipvs=None): its steps are noted as not applicable, and conntrack found nothing.
        assert (result.outcome, result.message) == ("AlreadyClean", NO_IPVS_NOTE)


# --- raw from the watch: the runner keeps watching whatever it is handed ----------------------------


class HostileWatch:
    """The API side of the agent's intent watch: a list and a watch stream of hostile objects.

    Stands in for the API server at the client boundary (``list`` and ``watch`` of KubeClient).
    """

    def __init__(self, listed: list[Any], streamed: list[Any]) -> None:
        self.listed = listed
        self.streamed = streamed
        self.watches = 0

    async def list(self, resource: Resource, *_: Any, **__: Any) -> tuple[list[Any], str]:
        return list(self.listed), "1"

    async def watch(self, resource: Resource, version: str, *_: Any, **__: Any) -> AsyncIterator[WatchEvent]:
        self.watches += 1
        if self.watches == 1:
            for obj in self.streamed:
                yield WatchEvent("MODIFIED", obj)
        await asyncio.Event().wait()  # a quiet, open stream


def _good(name: str) -> dict[str, Any]:
    raw = base()
    raw["metadata"].update(name=name, uid=f"uid-{name}")
    return raw


async def test_the_intent_watch_survives_every_hostile_object(caplog: pytest.LogCaptureFixture) -> None:
    hostile = [build() for build, _ in IGNORED.values() if not _is_huge(build)]
    listed = [*hostile, _good("listed")]
    streamed = [*hostile, _good("streamed")]
    dp, model = node()
    agent = NodeAgent(AgentSettings(node_name="node-1"), dp)
    fake = HostileWatch(listed, streamed)
    runner = AgentRunner(cast(KubeClient, fake), agent)
    stop = asyncio.Event()
    caplog.set_level(logging.WARNING, AGENT_LOG)
    task = asyncio.create_task(runner._watch_intents(stop))
    try:
        async with asyncio.timeout(30):
            while {r.intent for r in agent.recent_results()} != {"listed", "streamed"}:
                assert not task.done(), task.exception() if task.done() else None
                await asyncio.sleep(0.01)
        assert not task.done(), "the watch is still running"
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    malformed = [r.getMessage() for r in caplog.records if "ignoring malformed intent" in r.getMessage()]
    assert len(malformed) == len({m.split(":")[0] for m in malformed}), "each logged once"
    assert live_untouched(model)


def _is_huge(build: Callable[[], Any]) -> bool:
    return build in {IGNORED[name][0] for name in IGNORED if name.startswith("huge-")}


# --- random structures ------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
PATHS = [
    "apiVersion",
    "kind",
    "metadata",
    "metadata.name",
    "metadata.uid",
    "spec",
    "spec.action",
    "spec.service",
    "spec.service.clusterIPs",
    "spec.service.ports",
    "spec.deadBackends",
    "spec.liveBackends",
    "spec.steps",
    "spec.allNodes",
    "spec.nodeNames",
    "spec.nodeSelector",
    "spec.dryRun",
    "spec.decidedAt",
    "spec.expiresAt",
    "spec.parameters",
]
mutations = st.lists(st.tuples(st.sampled_from(PATHS), json_values), min_size=1, max_size=4)


def _mutate(raw: dict[str, Any], path: str, value: Any) -> None:
    node: Any = raw
    *parents, last = path.split(".")
    for part in parents:
        if not isinstance(node, dict):
            return
        node = node.setdefault(part, {})
    if isinstance(node, dict):
        node[last] = value


@settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=mutations, whole=st.none() | json_values)
def test_random_intents_never_crash_the_agent_nor_touch_a_live_backend(
    changes: list[tuple[str, Any]], whole: Any
) -> None:
    raw: Any = base()
    for path, value in changes:
        _mutate(raw, path, value)
    if whole is not None and not isinstance(whole, dict):
        raw = whole
    agent, model = new_agent()
    logging.getLogger(AGENT_LOG).disabled = True
    try:
        result = asyncio.run(agent.on_intent(raw))
    finally:
        logging.getLogger(AGENT_LOG).disabled = False
    assert result is None or result.outcome in ("Applied", "AlreadyClean", "DryRun", "Refused", "Failed")
    assert live_untouched(model)
