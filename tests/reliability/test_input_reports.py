"""Hostile NodeProxyHealth reports at the operator: its processing never crashes, and a report that
is malformed, absurd or from a node the cluster does not have causes no action.

The real controller and node repairs run against the API emulator, with a policy that enables every
action, no observation time and no cooldown: the same report without its defect does cause actions
(``test_the_evidence_alone_causes_actions``), so the absence of actions below is the defect's doing.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from proxymedic.emulator.runner import serve
from proxymedic.kube.client import Connection, KubeClient
from proxymedic.kube.events import EventRecorder
from proxymedic.kube.resources import EVENTS, INTENTS
from proxymedic.operator.controller import Controller
from proxymedic.operator.repairs import NodeRepairs
from proxymedic.sim.coredns import DnsPods, dns_service
from tests.contract.test_crd_parity import CRDS
from tests.reliability.input_reports import ABSURD, DEAD, LIVE, NODE, REJECTED, UNKNOWN_NODES, evidence

pytestmark = pytest.mark.emulator

REPORT_SECONDS = 5.0
"""Processing any one report, the largest included, takes less than this."""
POLICY_SPEC: dict[str, Any] = {
    "services": {"namespaces": ["kube-system"], "labelSelector": {"matchLabels": {"k8s-app": "kube-dns"}}},
    "actions": {
        "flushStaleConnections": {"enabled": True},
        "removeStaleRealServers": {"enabled": True},
        "flushStaleConntrack": {"enabled": True},
        "enforceSysctls": {"enabled": True},
        "restartKubeProxy": {"enabled": True, "staleAfter": "10s"},
        "raiseConntrackMax": {"enabled": True, "ceiling": 1 << 20},
        "ipvsUDPTimeout": {"enabled": True, "timeout": "5m"},
    },
    "guardrails": {"minObservation": "0s", "nodeCooldown": "0s", "anomalyMinNodes": 5},
}
ACTION_EVENTS = {"KubeProxyRestarted", "KubeProxyNotFound", "DryRun", "RemediationHeld"}


@dataclass
class Operator:
    controller: Controller
    repairs: NodeRepairs
    client: KubeClient

    async def report(self, name: str, body: Mapping[str, Any] | None) -> None:
        """The operator's NodeProxyHealth handler (handlers.health_event calls it), then a sweep."""
        if await self.controller.accept_report(name, None if body is None else dict(body)):
            await self.repairs.on_report(name)
        await self.repairs.sweep()
        await self.controller.drain()

    async def actions(self) -> tuple[list[dict[str, Any]], list[str]]:
        intents, _ = await self.client.list(INTENTS)
        events = []
        for namespace in ("default", "kube-system"):
            listed, _ = await self.client.list(EVENTS, namespace)
            events += [e["reason"] for e in listed]
        return intents, events


@pytest.fixture
async def operator() -> AsyncIterator[Operator]:
    async with serve() as api:
        for path in sorted(CRDS.glob("*.yaml")):
            api.register_crd(yaml.safe_load(path.read_text()))
        async with KubeClient(Connection(server=str(api.url).rstrip("/"))) as client:
            controller = Controller(client, EventRecorder(client, "proxymedic-operator", "test"))
            repairs = NodeRepairs.of(controller)
            policy = {
                "apiVersion": "proxymedic.io/v1alpha1",
                "kind": "ProxyHealthPolicy",
                "metadata": {"name": "coredns"},
                "spec": POLICY_SPEC,
            }
            await controller.policy_event("ADDED", policy)
            controller.service_event("ADDED", dns_service())
            controller.slice_event("ADDED", DnsPods({LIVE: "ready"}).endpoint_slice())
            await controller.drain()
            controller.cluster.set_node(
                {"metadata": {"name": NODE, "uid": "uid-node-1", "labels": {}}}, deleted=False
            )
            controller.cluster.set_node({"metadata": {"name": "node-gone", "uid": "uid-gone"}}, deleted=False)
            controller.cluster.set_node({"metadata": {"name": "node-gone"}}, deleted=True)
            yield Operator(controller, repairs, client)
            await controller.close()


async def test_the_evidence_alone_causes_actions(operator: Operator) -> None:
    await operator.report(NODE, evidence())
    intents, events = await operator.actions()
    assert any(DEAD in i["spec"]["deadBackends"] and i["spec"]["nodeNames"] == [NODE] for i in intents), (
        intents
    )
    assert "KubeProxyNotFound" in events, "a restart was attempted (no kube-proxy pod in this cluster)"


async def _no_action(operator: Operator, name: str, body: dict[str, Any]) -> list[str]:
    started = time.perf_counter()
    await operator.report(name, body)
    await operator.report(name, body)  # and again: a repeated report changes nothing either
    assert time.perf_counter() - started < 2 * REPORT_SECONDS
    intents, events = await operator.actions()
    assert intents == []
    assert not set(events) & ACTION_EVENTS, events
    return events


@pytest.mark.parametrize("body", REJECTED.values(), ids=REJECTED.keys())
async def test_malformed_reports_are_no_evidence(operator: Operator, body: dict[str, Any]) -> None:
    assert await _no_action(operator, NODE, body) == [], "no Event either"
    assert NODE not in operator.controller.cluster.healths


@pytest.mark.parametrize("body", ABSURD.values(), ids=ABSURD.keys())
async def test_absurd_values_cause_no_action(operator: Operator, body: dict[str, Any]) -> None:
    await _no_action(operator, NODE, body)


@pytest.mark.parametrize("body", UNKNOWN_NODES.values(), ids=UNKNOWN_NODES.keys())
async def test_reports_of_unknown_nodes_are_no_evidence(operator: Operator, body: dict[str, Any]) -> None:
    name = body["metadata"]["name"]
    assert await _no_action(operator, name, body) == []
    policy = operator.controller.cluster.policies["coredns"].policy
    assert policy is not None
    assert operator.controller.cluster.selected_nodes(policy, operator.controller.now()) == []


async def test_a_deleted_report_is_forgotten(operator: Operator) -> None:
    await operator.report(NODE, REJECTED["status-a-list"])
    await operator.report(NODE, None)
    assert NODE not in operator.controller.cluster.healths
