"""A kube-proxy restart is decided once, however many judgements of the node overlap.

The housekeeping sweep and a node's report are handled by different Kopf tasks: both can judge
the same stale node while the other is still deleting its kube-proxy pod.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from proxymedic.kube.client import JsonObject, KubeClient, NotFoundError
from proxymedic.kube.events import EventRecorder
from proxymedic.kube.resources import EVENTS, PODS, Resource
from proxymedic.operator.controller import Controller
from proxymedic.operator.repairs import NodeRepairs
from proxymedic.sim.waiting import until
from tests.unit.factories import node_health, policy

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
NODE = "node-1"
POD = "kube-proxy-node-1"


class SlowPodApi(KubeClient):
    """An API whose kube-proxy pod list answers only when the test lets it (with the pods as they were
    when it was asked); a pod deleted once is gone."""

    def __init__(self) -> None:  # no HTTP session: every call used here is answered in memory
        self.answer_pod_list = asyncio.Event()
        self.pod_lists_waiting = 0
        self.deleted: list[str] = []
        self.events: list[JsonObject] = []
        self.event_repeats: list[JsonObject] = []
        """Count bumps of an Event already posted: each is one more occurrence of it."""

    async def list(self, resource: Resource, namespace: str | None = None, **_: Any) -> tuple[list[Any], str]:
        assert resource is PODS
        owner = {"kind": "DaemonSet", "name": "kube-proxy", "uid": "ds-uid", "controller": True}
        pod = {"metadata": {"name": POD, "namespace": "kube-system", "ownerReferences": [owner]}}
        pods = [] if POD in self.deleted else [pod]
        self.pod_lists_waiting += 1
        await self.answer_pod_list.wait()
        return pods, "1"

    async def delete(self, resource: Resource, name: str, namespace: str | None = None, **_: Any) -> None:
        if name in self.deleted:
            raise NotFoundError(404, "NotFound", f"pods {name!r} not found")
        self.deleted.append(name)

    async def create(self, resource: Resource, obj: JsonObject, namespace: str | None = None) -> JsonObject:
        assert resource is EVENTS
        self.events.append(obj)
        return obj

    async def patch(
        self, resource: Resource, name: str, patch: JsonObject, namespace: str | None = None, **_: Any
    ) -> JsonObject:
        assert resource is EVENTS
        self.event_repeats.append(patch)
        return patch


def stale_report(round_: int) -> dict[str, Any]:
    report = node_health(
        observedAt=NOW.isoformat(),
        incarnation="agent-a",
        round=round_,
        kubeProxy={
            "freshness": "Stale",
            "healthz": "Healthy",
            "lastSyncTime": (NOW - timedelta(minutes=10)).isoformat(),
            "reason": "no sync for 10 minutes",
        },
        recentResults=[],
    )
    report["metadata"]["name"] = report["spec"]["nodeName"] = NODE
    return report


async def test_a_sweep_and_a_report_judging_a_stale_node_at_once_restart_it_once() -> None:
    api = SlowPodApi()
    controller = Controller(api, EventRecorder(api, "proxymedic-operator", "test"), clock=lambda: NOW)
    repairs = NodeRepairs.of(controller)
    body = policy(
        actions={"restartKubeProxy": {"enabled": True, "staleAfter": "10s"}},
        guardrails={"minObservation": "0s", "nodeCooldown": "1h"},
    )
    body["metadata"]["uid"] = "policy-uid"
    controller.cluster.set_policy("coredns", body)
    controller.cluster.set_node({"metadata": {"name": NODE, "uid": "node-uid"}}, deleted=False)
    controller.cluster.set_health(NODE, stale_report(1))  # the first report the operator holds

    # Round 2 is evidence sensed after round 1: its judgement decides a restart and looks up the pod.
    assert await controller.accept_report(NODE, stale_report(2))
    report = asyncio.create_task(repairs.on_report(NODE))
    async with asyncio.timeout(5):
        await until(lambda: api.pod_lists_waiting >= 1, interval=0)
    # The housekeeping sweep judges the node while that restart is in flight: its judgement either
    # ends (the restart is already being decided) or reaches a pod lookup of its own.
    sweep = asyncio.create_task(repairs.sweep())
    async with asyncio.timeout(5):
        await until(lambda: sweep.done() or api.pod_lists_waiting >= 2, interval=0)
    api.answer_pod_list.set()
    async with asyncio.timeout(5):
        await asyncio.gather(sweep, report)

    restarted = [e for e in api.events if e["reason"] == "KubeProxyRestarted"]
    assert api.deleted == [POD]
    assert len(restarted) == 1, [e["message"] for e in restarted]
    assert not api.event_repeats, "the one restart was reported twice"
    entry = controller.cluster.policies["coredns"]
    assert entry.counters.kube_proxy_restarts == 1
    assert len(entry.history) == 1
