"""A fast simulated cluster for scenario tests: the real operator and agents, short timings."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

from proxymedic.dataplane.types import Endpoint, L4Protocol, ServiceKey
from proxymedic.operator.controller import ControllerSettings
from proxymedic.operator.handlers import OperatorOptions
from proxymedic.sim.waiting import until
from proxymedic.sim.world import DNS_VIP, NodeSpec, World, WorldSettings

DNS = ServiceKey(L4Protocol.UDP, ipaddress.ip_address(DNS_VIP), 53)
OLD = ("10.244.100.10", "10.244.100.11")
NEW = ["10.244.100.20", "10.244.100.21"]

ALL_ACTIONS: dict[str, Any] = {
    "flushStaleConnections": {"enabled": True},
    "removeStaleRealServers": {"enabled": True},
    "flushStaleConntrack": {"enabled": True},
    "enforceSysctls": {"enabled": True},
    "restartKubeProxy": {"enabled": True, "staleAfter": "10s"},
}


BUSY_KUBE_PROXY: dict[str, Any] = {
    "min_sync_period": 3600.0,
    "sync_period": 3600.0,
    "agent_stale_after": 3600.0,
}
"""World settings for a kube-proxy too busy to sync within a test, however long a busy machine makes
the test last, and never called stale: whatever is cleared, ProxyMedic cleared."""


def policy(actions: Mapping[str, Any] | None = None, **guardrails: Any) -> dict[str, Any]:
    return {
        "services": {
            "namespaces": ["kube-system"],
            "labelSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        },
        "actions": dict(ALL_ACTIONS if actions is None else actions),
        "guardrails": {"minObservation": "1s", "nodeCooldown": "0s", **guardrails},
    }


def world(nodes: list[NodeSpec] | int = 3, *, spec: dict[str, Any] | None = None, **settings: Any) -> World:
    if isinstance(nodes, int):
        nodes = [NodeSpec(f"node-{i}") for i in range(1, nodes + 1)]
    options = OperatorOptions(
        standalone=True, housekeeping_interval=0.2, controller=ControllerSettings(coalesce_window=0.05)
    )
    defaults: dict[str, Any] = {
        "policy_spec": spec if spec is not None else policy(),
        "agent_sense_interval": 0.2,
        "min_sync_period": 0.3,
        "sync_period": 30.0,
        "restart_delay": 0.2,
        "operator": options,
    }
    defaults.update(settings)
    return World(WorldSettings(nodes=nodes, **defaults))


async def eventually(condition: Callable[[], bool], within: float = 30.0) -> None:
    """Wait for ``condition``; ``within`` only bounds a hang, it is no claim about speed: a busy
    machine may take many times longer than an idle one."""
    async with asyncio.timeout(within):
        await until(condition)


async def sweeps(w: World, count: int = 2, within: float = 30.0) -> None:
    """Wait until the operator has finished ``count`` more housekeeping sweeps of every policy. With
    two, one sweep of each started after this call: it judged every node as things are now. A test
    that asserts that nothing happened waits for this first, so the step that would have done it
    has run."""
    controller = w.controller
    assert controller is not None, "no operator is running"
    done = controller.sweeps_completed
    targets = {name: done[name] + count for name in list(controller.cluster.policies)}
    await eventually(lambda: all(done[name] >= target for name, target in targets.items()), within)


async def resyncs(w: World, count: int = 1, within: float = 30.0) -> None:
    """Wait until every node's kube-proxy has synced ``count`` more times (periodic resyncs included)."""
    targets = {name: node.kube_proxy.syncs + count for name, node in w.nodes.items()}
    await eventually(lambda: all(w.nodes[n].kube_proxy.syncs >= t for n, t in targets.items()), within)


async def sensed(w: World, count: int = 2, within: float = 30.0) -> None:
    """Wait until every running agent has finished ``count`` more sensing rounds."""
    targets = {name: runner.rounds + count for name, runner in w.agents.items()}
    await eventually(lambda: all(w.agents[n].rounds >= t for n, t in targets.items()), within)


async def queried(w: World, count: int = 10, within: float = 30.0) -> None:
    """Wait until every DNS client has sent ``count`` more queries."""
    clients = [client for node in w.nodes.values() for client in node.clients]
    targets = [client.stats.sent + count for client in clients]
    await eventually(lambda: all(c.stats.sent >= t for c, t in zip(clients, targets, strict=True)), within)


def all_summarized(w: World) -> bool:
    """The operator has issued intents and posted every one's summary decision."""
    controller = w.controller
    return bool(
        controller is not None
        and controller.cluster.intents
        and all(t.summarized for t in controller.cluster.intents.values())
    )


async def settled(w: World) -> None:
    await eventually(w.settled)


async def events(w: World, reason: str | None = None) -> list[Mapping[str, Any]]:
    return [e for e in await w.events() if reason is None or e["reason"] == reason]


async def wait_for_events(
    w: World, reason: str, count: int = 1, within: float = 30.0
) -> list[Mapping[str, Any]]:
    """The Events with this reason, once there are at least ``count`` of them (Events are posted
    after the decision they report: read once, they may not be there yet)."""
    async with asyncio.timeout(within):
        while True:
            found = await events(w, reason)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.1)


def has_state_of(w: World, node: str, backend: str) -> bool:
    """Whether a node still has a real server or a connection entry for the backend."""
    model = w.nodes[node].model
    ip = ipaddress.ip_address(backend)
    for vs in model.list_services():
        if any(rs.endpoint.ip == ip for rs in vs.real_servers):
            return True
    return any(c.destination == Endpoint(ip, 53) and c.count for c in model.connection_counts())
