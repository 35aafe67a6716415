"""The controller's handling of EndpointSlice changes: named ports, and what is pending at shutdown.

A named target port still resolves when the Service's last backend leaves.

The EndpointSlice controller writes a slice with no endpoints and no ports once a Service has no
backends; the dead backends' real servers still listen on the number the earlier slices gave.
The operator (the real controller, the API emulator standing in for the API server) must issue
the flush intent with that number, not skip it for want of one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from proxymedic.emulator.runner import serve
from proxymedic.kube.client import Connection, KubeClient
from proxymedic.kube.events import EventRecorder
from proxymedic.kube.resources import INTENTS
from proxymedic.operator.controller import Controller
from tests.contract.test_crd_parity import CRDS

pytestmark = pytest.mark.emulator

DEAD = "10.244.1.5"
POLICY: dict[str, Any] = {
    "apiVersion": "proxymedic.io/v1alpha1",
    "kind": "ProxyHealthPolicy",
    "metadata": {"name": "dns"},
    "spec": {
        "services": {"namespaces": ["apps"], "labelSelector": {"matchLabels": {"app": "dns"}}},
        "actions": {"flushStaleConnections": {"enabled": True}},
    },
}
SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "dns", "namespace": "apps", "uid": "svc-1", "labels": {"app": "dns"}},
    "spec": {
        "clusterIP": "10.96.7.7",
        "clusterIPs": ["10.96.7.7"],
        "ports": [{"name": "dns", "protocol": "UDP", "port": 53, "targetPort": "dns"}],
    },
}


def dns_slice(
    endpoints: list[str], ports: list[dict[str, Any]], version: str, name: str = "dns-abcde"
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "apps",
            "resourceVersion": version,
            "labels": {"kubernetes.io/service-name": "dns"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in endpoints],
        "ports": ports,
    }


@pytest.fixture
async def controller() -> AsyncIterator[tuple[Controller, KubeClient]]:
    async with serve() as api:
        for path in sorted(CRDS.glob("*.yaml")):
            api.register_crd(yaml.safe_load(path.read_text()))
        async with KubeClient(Connection(server=str(api.url).rstrip("/"))) as client:
            recorder = EventRecorder(client, "proxymedic-operator", "test")
            ctl = Controller(client, recorder, clock=lambda: datetime(2030, 1, 1, tzinfo=UTC))
            await ctl.policy_event("ADDED", POLICY)
            ctl.service_event("ADDED", SERVICE)
            yield ctl, client
            await ctl.close()


async def test_the_last_backend_leaving_is_flushed_on_the_port_it_listened_on(
    controller: tuple[Controller, KubeClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxymedic.operator")
    ctl, client = controller
    ctl.slice_event("ADDED", dns_slice([DEAD], [{"name": "dns", "protocol": "UDP", "port": 5353}], "1"))
    await ctl.drain()
    ctl.slice_event("MODIFIED", dns_slice([], [], "2"))  # what the controller writes for no backends
    await ctl.drain()
    intents, _ = await client.list(INTENTS)
    assert len(intents) == 1
    spec = intents[0]["spec"]
    assert spec["deadBackends"] == [DEAD]
    assert spec["service"]["ports"] == [{"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 5353}]
    # The operator's log says what it decided, as the Event will once the agents report.
    issued = [r.getMessage() for r in caplog.records if " issued: " in r.getMessage()]
    assert issued == [
        f"intent {intents[0]['metadata']['name']} issued: FlushStaleBackends for Service apps/dns, "
        "0 target node(s) [policy dns]"
    ]


def dns_port(number: int) -> list[dict[str, Any]]:
    return [{"name": "dns", "protocol": "UDP", "port": number}]


def target_ports(intents: list[dict[str, Any]]) -> dict[str, int]:
    """Dead backend → the real-server port its intent names."""
    return {
        backend: intent["spec"]["service"]["ports"][0]["targetPort"]
        for intent in intents
        for backend in intent["spec"]["deadBackends"]
    }


async def test_each_dead_backend_is_flushed_on_the_port_its_own_slice_gave(
    controller: tuple[Controller, KubeClient],
) -> None:
    """A rollout that moves the container port: the old pods' slice says 53, the new pods' 5353.
    Each dead backend's real servers listen on its own slice's number."""
    ctl, client = controller
    old, old2, new = DEAD, "10.244.1.6", "10.244.2.9"
    ctl.slice_event("ADDED", dns_slice([old, old2], dns_port(53), "1", name="dns-old"))
    ctl.slice_event("ADDED", dns_slice([new], dns_port(5353), "2", name="dns-new"))
    await ctl.drain()
    ctl.slice_event("MODIFIED", dns_slice([old2], dns_port(53), "3", name="dns-old"))
    await ctl.drain()
    ctl.slice_event("MODIFIED", dns_slice([], [], "4", name="dns-old"))  # the last old pod leaves
    await ctl.drain()
    intents, _ = await client.list(INTENTS)
    assert target_ports(intents) == {old: 53, old2: 53}
    # An old and a new pod die at once: one intent per port number.
    old3 = "10.244.1.7"
    ctl.slice_event("MODIFIED", dns_slice([old3], dns_port(53), "5", name="dns-old"))
    await ctl.drain()
    ctl.slice_event("MODIFIED", dns_slice([], [], "6", name="dns-old"))
    ctl.slice_event("MODIFIED", dns_slice([], [], "7", name="dns-new"))
    await ctl.drain()
    intents, _ = await client.list(INTENTS)
    assert target_ports(intents) == {old: 53, old2: 53, old3: 53, new: 5353}
    assert len(intents) == 4


async def test_closing_drops_pending_decisions_and_finishes_those_in_flight(
    controller: tuple[Controller, KubeClient],
) -> None:
    """A slice change just before shutdown leaves no timer to fire and no task to be destroyed unrun
    when the loop closes (it surfaced as 'coroutine evaluate_service was never awaited')."""
    ctl, _ = controller
    ctl.slice_event("ADDED", dns_slice([DEAD], [{"name": "dns", "protocol": "UDP", "port": 5353}], "1"))
    assert ctl._pending
    ran = asyncio.Event()

    async def decision() -> None:
        await asyncio.sleep(0)
        ran.set()

    ctl.spawn(decision())
    await ctl.close()
    assert not ctl._pending
    assert not ctl._tasks
    assert ran.is_set()
