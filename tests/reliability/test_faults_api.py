"""API faults on the real HTTP path of the operator (Kopf) and the agents, during a CoreDNS rollout
and during a kube-proxy stall: nothing is lost, and no restart happens beyond the guardrails.

Each fault kind hits the requests both components make: the watches of EndpointSlices,
NodeProxyHealths and RemediationIntents, the lists behind them, the intent creates, the status
writes, the Events, and (in the stall) the kube-proxy pod list and delete of a restart.
"""

from __future__ import annotations

import pytest

from proxymedic.kube.resources import ENDPOINT_SLICES, EVENTS, INTENTS, NODE_HEALTHS, PODS
from proxymedic.sim.world import World
from tests.reliability.faults_api import Faults
from tests.reliability.faults_scenarios import within_fault_world

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(90)]

SCENARIOS = ["rollout", "stall"]


def _operator_pod_list(request: object) -> bool:
    """The operator's kube-proxy lookup (by node), not the simulated DaemonSet's own watch."""
    params = getattr(request, "params", {})
    return "spec.nodeName=" in str(params.get("fieldSelector", ""))


def _writes(faults: Faults, scenario: str, fault: str) -> None:
    """The same fault on every kind of write and list both components make."""
    for verb, resource, budget in (
        ("post", INTENTS, 2),
        ("patch", NODE_HEALTHS, 6),
        ("post", EVENTS, 2),
        ("list", INTENTS, 2),
    ):
        if verb == "list" and fault == "slow":
            continue  # agents list only after an error; test_410_gone_on_watches covers relists
        if fault == "500":
            faults.error(verb, resource, 500, budget)
        elif fault == "429":
            faults.throttle(verb, resource, budget, retry_after=1)
        else:
            faults.slow(verb, resource, budget, delay=0.5)
    if scenario == "stall":
        if fault == "500":
            faults.error("list", PODS, 500, 1, match=_operator_pod_list)
            faults.error("delete", PODS, 500, 1)
        elif fault == "429":
            faults.throttle("list", PODS, 1, retry_after=1, match=_operator_pod_list)
            faults.throttle("delete", PODS, 1, retry_after=1)
        else:
            faults.slow("delete", PODS, 1, delay=0.5)


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_watch_streams_cut_mid_event(scenario: str) -> None:
    async def install(w: World, faults: Faults) -> None:
        faults.cut_watch(ENDPOINT_SLICES, 2, after=0)
        faults.cut_watch(NODE_HEALTHS, 4, after=1)
        faults.cut_watch(INTENTS, 6, after=0)
        w.emulator.drop_watches()  # every client reconnects into the faulty streams

    figures = await within_fault_world(scenario, install)
    assert figures.injected["watch cut mid-event remediationintents"] >= 3


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_410_gone_on_watches(scenario: str) -> None:
    async def install(w: World, faults: Faults) -> None:
        faults.gone(ENDPOINT_SLICES, 2)
        faults.gone(NODE_HEALTHS, 2)
        faults.gone(INTENTS, 6)
        w.emulator.drop_watches()

    async def midway(w: World, faults: Faults) -> None:
        w.emulator.compact_history()  # and the server's own 410: every resume is too old
        w.emulator.drop_watches()

    await within_fault_world(scenario, install, midway)


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_429_with_retry_after(scenario: str) -> None:
    async def install(w: World, faults: Faults) -> None:
        _writes(faults, scenario, "429")
        faults.throttle("watch", INTENTS, 3, retry_after=1)
        w.emulator.drop_watches()

    await within_fault_world(scenario, install)


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_500_errors(scenario: str) -> None:
    async def install(w: World, faults: Faults) -> None:
        _writes(faults, scenario, "500")
        faults.error("watch", ENDPOINT_SLICES, 500, 1)
        faults.error("watch", INTENTS, 500, 3)
        w.emulator.drop_watches()

    await within_fault_world(scenario, install)


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_slow_responses(scenario: str) -> None:
    async def install(w: World, faults: Faults) -> None:
        _writes(faults, scenario, "slow")
        faults.slow("watch", ENDPOINT_SLICES, 2, delay=1.0)
        faults.slow("watch", INTENTS, 3, delay=1.0)
        w.emulator.drop_watches()

    await within_fault_world(scenario, install)


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_stale_list_then_watch(scenario: str) -> None:
    # Lists from a lagging cache: the items and the resourceVersion from before the rollout began,
    # served after a 410 forced every client to list again in the middle of it.
    snapshots: dict[str, dict[str, object]] = {}

    async def install(w: World, faults: Faults) -> None:
        snapshots["slices"] = faults.snapshot(ENDPOINT_SLICES)
        snapshots["intents"] = faults.snapshot(INTENTS)

    async def midway(w: World, faults: Faults) -> None:
        faults.gone(ENDPOINT_SLICES, 1)
        faults.gone(INTENTS, 4)
        faults.stale_list(ENDPOINT_SLICES, snapshots["slices"], 1)
        faults.stale_list(INTENTS, snapshots["intents"], 4)
        w.emulator.drop_watches()

    await within_fault_world(scenario, install, midway)
