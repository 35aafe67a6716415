"""A small simulated cluster: the API emulator, modelled nodes with a simulated kube-proxy and DNS
clients, and, when asked, ProxyMedic's real operator and real agents.

Everything runs in one event loop on real time. The operator and the agents talk to the
emulator over real HTTP, exactly as in a cluster; only the kernel (the modelled dataplane)
and kube-proxy (``KubeProxySim``) are simulated.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from proxymedic.agent.agent import AgentSettings, NodeAgent
from proxymedic.agent.node import NodeDataplane
from proxymedic.agent.runner import AgentRunner
from proxymedic.agent.sensing import SenseSettings
from proxymedic.api.crd import KINDS, build_crd
from proxymedic.dataplane.kubeproxy import KubeProxyObservation
from proxymedic.dataplane.types import DataplanePermissionError
from proxymedic.emulator.resources import kopf_peering_crds
from proxymedic.emulator.runner import serve
from proxymedic.emulator.server import KubernetesApiEmulator
from proxymedic.kube.client import Connection, KubeClient
from proxymedic.kube.resources import ENDPOINT_SLICES, EVENTS, NODES, PODS, POLICIES, SERVICES, Resource
from proxymedic.operator.controller import Controller, ControllerSettings
from proxymedic.operator.handlers import OperatorOptions, run_operator
from proxymedic.sim.coredns import (
    DNS_NAMESPACE,
    DNS_SERVICE,
    DNS_VIP,
    SLICE_NAME,
    DnsPods,
    dns_service,
    kube_proxy_pod,
)
from proxymedic.sim.kernel import ModelConfig, ModelledNode
from proxymedic.sim.kubeproxy import KubeProxySim, Stall
from proxymedic.sim.traffic import DnsClient, clients_for

KOPF_PEERINGS = Resource("kopf.dev", "v1", "clusterkopfpeerings", namespaced=False)

__all__ = ["DNS_NAMESPACE", "DNS_SERVICE", "DNS_VIP", "NodeSpec", "World", "WorldSettings"]


@dataclass
class NodeSpec:
    name: str
    kernel: tuple[int, int] = (6, 1)
    expire_nodest_conn: int = 1
    """kube-proxy sets both expire sysctls to 1 at start; a node where something reset one drifts."""
    expire_quiescent_template: int = 1
    conntrack_max: int = 262144
    sysctls_writable: bool = True
    """False: the node's agent reports /proc/sys read-only, as in the chart's default install."""
    note: str = "healthy"


@dataclass
class WorldSettings:
    nodes: list[NodeSpec]
    with_proxymedic: bool = True
    policy_spec: dict[str, Any] = field(default_factory=dict)
    backends: tuple[str, ...] = ("10.244.100.10", "10.244.100.11")
    clients_per_node: int = 2
    query_interval: float = 0.05
    min_sync_period: float = 1.0
    sync_period: float = 30.0
    restart_delay: float = 0.5
    agent_sense_interval: float = 0.5
    agent_heartbeat: float = 1.0
    """A status write even when nothing changed. The operator judges a change only on a round sensed
    after it, so a node whose state does not move (a dead watch ignoring a new backend) is seen
    anew at this pace: 300 s in production, shortened here with the rest of the cluster's time."""
    agent_stale_after: float = 3.0
    agent_settle: float = 1.0
    operator: OperatorOptions = field(
        default_factory=lambda: OperatorOptions(
            standalone=True, housekeeping_interval=0.5, controller=ControllerSettings(coalesce_window=0.05)
        )
    )


@dataclass
class SimNode:
    spec: NodeSpec
    model: ModelledNode
    kube_proxy: KubeProxySim
    clients: list[DnsClient]
    metrics_unreachable: bool = False
    """kube-proxy's metrics and healthz ports refuse connections (the agent must say Unknown)."""


class ReadOnlySysctls:
    """/proc/sys as an unprivileged container sees it: every sysctl readable, every write refused."""

    def __init__(self, node: ModelledNode) -> None:
        self.node = node

    def read(self, name: str) -> int:
        return self.node.read(name)

    def write(self, name: str, value: int) -> None:
        raise DataplanePermissionError(f"cannot write sysctl {name}: Read-only file system")


class OperatorThread:
    """The operator on its own event loop in a thread, stopped through its stop flag."""

    def __init__(self, url: str, options: OperatorOptions) -> None:
        self.url = url
        self.options = options
        self.controller: Controller | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proxymedic-operator", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._started.wait(10)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        url = self.url

        def login(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=url, insecure=True)

        def keep(controller: Controller) -> None:
            self.controller = controller

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._started.set()
        connection = Connection(server=url, ssl_context=False)
        await run_operator(connection, login, self.options, stop=self._stop, controller_ready=keep)


class World:
    """``async with World(settings) as world:`` builds the cluster and runs it until the block ends."""

    def __init__(self, settings: WorldSettings) -> None:
        self.settings = settings
        self.nodes: dict[str, SimNode] = {}
        self.pods = DnsPods(dict.fromkeys(settings.backends, "ready"))
        """Backend IP → ready | terminating (still answering, not ready) | gone."""
        self._operators: dict[str, OperatorThread] = {}
        """Running operators by key: ``"operator"``, and any other started with a key of its own."""
        self.agents: dict[str, AgentRunner] = {}
        self.traffic = False
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._components: dict[str, asyncio.Task[None]] = {}
        self._recreating: set[str] = set()
        """Nodes whose kube-proxy pod is being recreated (its DaemonSet's work in progress)."""
        self._component_stops: dict[str, asyncio.Event] = {}
        self.url = ""
        self._exit = contextlib.AsyncExitStack()
        self.emulator: KubernetesApiEmulator
        self.client: KubeClient

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> World:
        self.emulator = await self._exit.enter_async_context(serve(keep_requests=False, history_size=5000))
        for info in KINDS:
            self.emulator.register_crd(build_crd(info))
        for crd in kopf_peering_crds():
            self.emulator.register_crd(crd)
        url = str(self.emulator.url).rstrip("/")
        self.client = await self._exit.enter_async_context(
            KubeClient(Connection(server=url, ssl_context=False))
        )
        for index, spec in enumerate(self.settings.nodes, start=1):
            self._add_node(spec, index)
        await self._create_objects()
        self._spawn(self._tick(), "ticker")
        self._spawn(self._watch_kube_proxy_pods(), "kube-proxy-pods")
        if self.settings.with_proxymedic:
            self._start_proxymedic(url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        for key in list(self._operators):
            await self.stop_component(key)
        for key in list(self._components):
            await self.stop_component(key)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._exit.aclose()

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coro, name=name))

    def _add_node(self, spec: NodeSpec, index: int) -> None:
        model = ModelledNode(
            time.time,
            ModelConfig(
                kernel_version=spec.kernel,
                expire_nodest_conn=spec.expire_nodest_conn,
                expire_quiescent_template=spec.expire_quiescent_template,
                conntrack_max=spec.conntrack_max,
            ),
            alive=[ipaddress.ip_address(ip) for ip in self.settings.backends],
        )
        kube_proxy = KubeProxySim(
            spec.name,
            model,
            min_sync_period=self.settings.min_sync_period,
            sync_period=self.settings.sync_period,
        )
        clients = clients_for(spec.name, index, DNS_VIP, self.settings.clients_per_node)
        self.nodes[spec.name] = SimNode(spec, model, kube_proxy, clients)
        kube_proxy.restart(self.desired(), time.time())
        kube_proxy.restarts = 0

    def _start_proxymedic(self, url: str) -> None:
        self.url = url
        self.start_operator()
        for name in self.nodes:
            self.start_agent(name)

    def start_operator(self, options: OperatorOptions | None = None, key: str = "operator") -> None:
        """Run ProxyMedic's operator (again): it rebuilds its state from the watches.

        It gets a thread and an event loop of its own, as it would get a process: Kopf cancels
        every task of its loop when it stops, the emulator's too if they shared one. Another
        ``key`` (with options of its own, e.g. peering) runs one more replica beside it.
        """
        operator = OperatorThread(self.url, options or self.settings.operator)
        self._operators[key] = operator
        operator.start()

    @property
    def controller(self) -> Controller | None:
        return self.controller_of("operator")

    def controller_of(self, key: str) -> Controller | None:
        operator = self._operators.get(key)
        return operator.controller if operator is not None else None

    def start_agent(self, name: str) -> None:
        """Run the agent of one node (again): a new process has no memory of what it applied."""
        node = self.nodes[name]
        kube_proxy = node.kube_proxy

        async def probe() -> KubeProxyObservation:
            if node.metrics_unreachable:
                return KubeProxyObservation(
                    observed_at=time.time(),
                    metrics_error="http://127.0.0.1:10249/metrics: connection refused",
                    mode_error="http://127.0.0.1:10249/proxyMode: connection refused",
                    healthz_error="http://127.0.0.1:10256/healthz: connection refused",
                )
            return kube_proxy.observation(time.time())

        dataplane = NodeDataplane(
            ipvs=node.model,
            connections=node.model,
            conntrack=node.model,
            sysctls=node.model if node.spec.sysctls_writable else ReadOnlySysctls(node.model),
            probe=probe,
            kernel_version=f"{node.spec.kernel[0]}.{node.spec.kernel[1]}.0-sim",
            sysctls_writable=lambda: node.spec.sysctls_writable,
        )
        settings = AgentSettings(
            node_name=name,
            sense_interval=self.settings.agent_sense_interval,
            heartbeat=self.settings.agent_heartbeat,
            min_write_interval=0.05,
            sense=SenseSettings(
                stale_after_seconds=self.settings.agent_stale_after, settle_seconds=self.settings.agent_settle
            ),
        )
        runner = AgentRunner(self.client, NodeAgent(settings, dataplane))
        self.agents[name] = runner
        stop = self._component_stops[f"agent:{name}"] = asyncio.Event()
        self._components[f"agent:{name}"] = asyncio.get_running_loop().create_task(
            runner.run(stop), name=f"agent:{name}"
        )

    async def stop_component(self, key: str) -> None:
        """Stop an operator (``"operator"`` or another key) or an agent (``"agent:NODE"``) as a killed
        process would."""
        if key in self._operators or not key.startswith("agent:"):
            operator = self._operators.pop(key, None)
            if operator is not None:
                await asyncio.to_thread(operator.stop)
            return
        task = self._components.pop(key)
        self._component_stops.pop(key).set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    # --- the cluster's objects ---------------------------------------------------------------

    async def _create_objects(self) -> None:
        for name in self.nodes:
            await self.client.create(
                NODES,
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"},
                    },
                },
            )
            await self._create_kube_proxy_pod(name)
        options = self.settings.operator
        if self.settings.with_proxymedic and not options.standalone:
            # Peering replicas need their ClusterKopfPeering object, as the chart installs it.
            await self.client.create(
                KOPF_PEERINGS,
                {
                    "apiVersion": "kopf.dev/v1",
                    "kind": "ClusterKopfPeering",
                    "metadata": {"name": options.peering_name},
                },
            )
        await self.client.create(SERVICES, dns_service(), DNS_NAMESPACE)
        await self.client.create(ENDPOINT_SLICES, self.pods.endpoint_slice(), DNS_NAMESPACE)
        if self.settings.with_proxymedic:
            await self.client.create(
                POLICIES,
                {
                    "apiVersion": "proxymedic.io/v1alpha1",
                    "kind": "ProxyHealthPolicy",
                    "metadata": {"name": "coredns"},
                    "spec": self.settings.policy_spec,
                },
            )

    async def _create_kube_proxy_pod(self, node: str) -> None:
        await self.client.create(PODS, kube_proxy_pod(node), "kube-system")

    def in_use(self) -> frozenset[str]:
        return self.pods.in_use()

    def desired(self) -> dict[Any, Any]:
        return self.pods.desired()

    async def _publish(self) -> None:
        await self.client.patch(
            ENDPOINT_SLICES, SLICE_NAME, {"endpoints": self.pods.endpoints()}, DNS_NAMESPACE
        )
        now = time.time()
        desired = self.desired()
        for node in self.nodes.values():
            node.kube_proxy.want(desired, now)

    # --- what happens to the cluster ---------------------------------------------------------

    async def add_backend(self, ip: str) -> None:
        self.pods[ip] = "ready"
        for node in self.nodes.values():
            node.model.set_alive(ipaddress.ip_address(ip), True)
        await self._publish()

    async def terminate_backend(self, ip: str, lameduck: float) -> None:
        """Graceful termination: not ready at once, still answering for ``lameduck`` seconds, then gone."""
        await self.stop_ready(ip)
        await asyncio.sleep(lameduck)
        await self.remove_backend(ip)

    async def stop_ready(self, ip: str) -> None:
        """The pod starts terminating: no longer ready, still answering (its lameduck begins)."""
        self.pods[ip] = "terminating"
        await self._publish()

    async def remove_backend(self, ip: str) -> None:
        """The pod is gone: it answers nothing any more."""
        self.pods[ip] = "gone"
        for node in self.nodes.values():
            node.model.set_alive(ipaddress.ip_address(ip), False)
        await self._publish()

    async def rollout(self, new_ips: list[str], lameduck: float, surge_wait: float) -> None:
        """Replace every current backend with a new one, one at a time (maxSurge 1, maxUnavailable 0)."""
        old = [ip for ip, state in self.pods.items() if state == "ready"]
        for old_ip, new_ip in zip(old, new_ips, strict=False):
            await self.add_backend(new_ip)
            await asyncio.sleep(surge_wait)
            await self.terminate_backend(old_ip, lameduck)

    def stall(self, node: str, kind: Stall) -> None:
        self.nodes[node].kube_proxy.stall = kind

    async def _tick(self) -> None:
        while True:
            now = time.time()
            for node in self.nodes.values():
                node.kube_proxy.tick(now)
                if self.traffic:
                    for client in node.clients:
                        client.query(node.model, now)
            await asyncio.sleep(self.settings.query_interval)

    async def _watch_kube_proxy_pods(self) -> None:
        """The kube-proxy DaemonSet: a deleted pod comes back, and its kube-proxy starts afresh.

        Level-based, as the DaemonSet controller is: after every (re)list, a node without its pod
        gets one, so a delete that happened while the watch was down (a 410 forced a relist) is
        not lost.
        """
        version = ""
        while True:
            try:
                if not version:
                    pods, version = await self.client.list(PODS, "kube-system")
                    with_pod = {pod.get("spec", {}).get("nodeName") for pod in pods}
                    for node in self.nodes.keys() - with_pod:
                        self._recreate_soon(node)
                async for event in self.client.watch(PODS, version, "kube-system", timeout_seconds=60):
                    version = event.resource_version or version
                    node = event.object.get("spec", {}).get("nodeName")
                    if event.type == "DELETED" and node in self.nodes:
                        self._recreate_soon(node)
            except Exception:  # a watch hiccup: relist
                logging.getLogger("proxymedic.sim").debug("kube-proxy pod watch restarted", exc_info=True)
                version = ""
                await asyncio.sleep(0.1)

    def _recreate_soon(self, node: str) -> None:
        if node not in self._recreating:
            self._recreating.add(node)
            self._spawn(self._recreate_kube_proxy(node), f"restart:{node}")

    async def _recreate_kube_proxy(self, node: str) -> None:
        try:
            await asyncio.sleep(self.settings.restart_delay)
            await self._create_kube_proxy_pod(node)
            self.nodes[node].kube_proxy.restart(self.desired(), time.time())
        finally:
            self._recreating.discard(node)

    # --- observing -------------------------------------------------------------------------

    def settled(self) -> bool:
        """Every agent reported, and the operator has seen the reports, the policy and the Service."""
        if not all(runner.writes for runner in self.agents.values()):
            return False
        if self.controller is None:
            return not self.settings.with_proxymedic
        cluster = self.controller.cluster
        return (
            len(cluster.healths) >= len(self.agents)
            and bool(cluster.valid_policies())
            and bool(cluster.acted)
        )

    async def events(self) -> list[Mapping[str, Any]]:
        items, _ = await self.client.list(EVENTS)
        return sorted(items, key=lambda e: (e.get("lastTimestamp") or "", e["metadata"]["name"]))
