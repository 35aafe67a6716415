"""A node's repair intent is issued once, however many judgements of the node overlap.

The housekeeping sweep and a node's report are handled by different Kopf tasks. While one of them
awaits the API's answer to creating an intent, the other judges the same node: the finding is
still there (the intent has not run yet) and has lasted the minimum observation, so without a
guard its step is due a second time, and a second intent finds nothing left to do.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from proxymedic.kube.client import JsonObject, KubeClient
from proxymedic.kube.events import EventRecorder
from proxymedic.kube.resources import EVENTS, INTENTS, Resource
from proxymedic.operator.controller import Controller
from proxymedic.operator.repairs import NodeRepairs
from proxymedic.sim.waiting import until
from tests.unit.factories import node_health, policy

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
NODE = "node-1"
LIVE, STALE = "10.244.2.7", "10.244.1.9"


class SlowIntentApi(KubeClient):
    """An API that creates intents only when the test lets it; Events at once."""

    def __init__(self) -> None:  # no HTTP session: every call used here is answered in memory
        self.answer_creates = asyncio.Event()
        self.creates_waiting = 0
        self.intents: list[JsonObject] = []
        self.events: list[JsonObject] = []

    async def create(self, resource: Resource, obj: JsonObject, namespace: str | None = None) -> JsonObject:
        if resource is EVENTS:
            self.events.append(obj)
            return obj
        assert resource is INTENTS
        self.creates_waiting += 1
        await self.answer_creates.wait()
        created = {**obj, "metadata": {**obj["metadata"], "uid": f"uid-{len(self.intents)}"}}
        self.intents.append(created)
        return created

    async def patch(
        self, resource: Resource, name: str, patch: JsonObject, namespace: str | None = None, **_: Any
    ) -> JsonObject:
        return patch


def report(round_: int) -> dict[str, Any]:
    """A stale real server (STALE is in no slice) beside the live one, sensed in this round."""
    body = node_health(
        observedAt=(NOW - timedelta(seconds=5) + timedelta(seconds=round_)).isoformat(),
        incarnation="agent-a",
        round=round_,
        virtualServers=[
            {
                "vip": "10.96.0.10",
                "port": 53,
                "protocol": "UDP",
                "realServers": [
                    {"ip": ip, "port": 53, "weight": 1, "connections": 0} for ip in (STALE, LIVE)
                ],
            }
        ],
        recentResults=[],
    )
    body["metadata"]["name"] = body["spec"]["nodeName"] = NODE
    return body


def kube_dns() -> tuple[JsonObject, JsonObject]:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kube-dns",
            "namespace": "kube-system",
            "uid": "svc",
            "labels": {"k8s-app": "kube-dns"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "ipFamilies": ["IPv4"],
            "ports": [{"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 53}],
        },
    }
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kube-dns-1",
            "namespace": "kube-system",
            "uid": "slice",
            "labels": {"kubernetes.io/service-name": "kube-dns"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "dns", "protocol": "UDP", "port": 53}],
        "endpoints": [{"addresses": [LIVE], "conditions": {"ready": True}, "nodeName": "node-2"}],
    }
    return service, slice_


async def test_a_sweep_and_a_report_judging_a_stale_real_server_at_once_issue_one_intent() -> None:
    api = SlowIntentApi()
    controller = Controller(api, EventRecorder(api, "proxymedic-operator", "test"), clock=lambda: NOW)
    repairs = NodeRepairs.of(controller)
    body = policy(
        actions={"removeStaleRealServers": {"enabled": True}},
        guardrails={"minObservation": "0s", "dryRun": False},
    )
    body["metadata"]["uid"] = "policy-uid"
    assert controller.cluster.set_policy("coredns", body) is not None
    controller.cluster.set_node({"metadata": {"name": NODE, "uid": "node-uid"}}, deleted=False)
    service, slice_ = kube_dns()
    controller.cluster.set_service(service, deleted=False)
    controller.cluster.set_slice(slice_, deleted=False)
    controller.cluster.set_health(NODE, report(1), NOW - timedelta(seconds=5))

    # Round 2 is evidence sensed after round 1: its judgement decides the removal and creates the intent.
    assert await controller.accept_report(NODE, report(2))
    on_report = asyncio.create_task(repairs.on_report(NODE))
    async with asyncio.timeout(5):
        await until(lambda: api.creates_waiting >= 1, interval=0)
    # The sweep judges the node while that create is awaited: the same finding, still there.
    sweep = asyncio.create_task(repairs.sweep())
    async with asyncio.timeout(5):
        await until(lambda: sweep.done() or api.creates_waiting >= 2, interval=0)
    api.answer_creates.set()
    async with asyncio.timeout(5):
        await asyncio.gather(sweep, on_report)

    assert api.creates_waiting == 1, [i["spec"]["reason"] for i in api.intents]
    assert len(api.intents) == 1
    assert api.intents[0]["spec"]["deadBackends"] == [STALE]
    assert api.intents[0]["spec"]["nodeNames"] == [NODE]
