"""The simulated cluster: the API emulator, modelled nodes with a simulated kube-proxy and DNS
clients, and, when asked, ProxyMedic's real operator and real agents.

Everything runs in one event loop on real time. The operator and the agents talk to the
emulator over real HTTP, exactly as in a cluster; only the kernel (``proxymedic.sim.kernel``)
and kube-proxy (``KubeProxySim``) are simulated. The demo and the tests run a few nodes with
short timings; the benchmarks run thousands, and choose through ``WorldSettings`` how objects
are seeded, how the operator runs and how intents reach the agents.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from proxymedic.agent.agent import AgentSettings, NodeAgent
from proxymedic.agent.node import NodeDataplane
from proxymedic.agent.runner import AgentRunner
from proxymedic.agent.sensing import SenseSettings
from proxymedic.api.crd import KINDS, build_crd
from proxymedic.api.health import IntentResult
from proxymedic.dataplane.kubeproxy import KubeProxyObservation
from proxymedic.dataplane.types import DataplanePermissionError
from proxymedic.emulator.resources import kopf_peering_crds
from proxymedic.emulator.runner import serve
from proxymedic.emulator.server import KubernetesApiEmulator
from proxymedic.kube.client import Connection, GoneError, KubeClient
from proxymedic.kube.resources import (
    ENDPOINT_SLICES,
    EVENTS,
    INTENTS,
    NODES,
    PODS,
    POLICIES,
    SERVICES,
    Resource,
)
from proxymedic.operator.controller import Controller, ControllerSettings
from proxymedic.operator.handlers import OperatorOptions
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
from proxymedic.sim.operators import OperatorProcess, OperatorThread, RunningOperator
from proxymedic.sim.traffic import DnsClient, clients_for

logger = logging.getLogger("proxymedic.sim")

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


IntentListener = Callable[[str, dict[str, Any]], None]
"""Called with each event (type, object) of the shared intent watch, before the agents get it."""


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
    agent_min_write_interval: float = 0.05
    agent_stale_after: float = 3.0
    agent_settle: float = 1.0
    operator: OperatorOptions = field(
        default_factory=lambda: OperatorOptions(
            standalone=True, housekeeping_interval=0.5, controller=ControllerSettings(coalesce_window=0.05)
        )
    )
    # How the cluster is built and run: the demo and the tests keep the defaults; the benchmarks,
    # with thousands of nodes in one process, choose otherwise.
    operator_process: bool = False
    """Run the operator as a ``proxymedic operator --kubeconfig`` subprocess (``OperatorProcess``)
    rather than in a thread of this process; ``controller`` is then None."""
    seed_through_store: bool = False
    """Put the setup objects (Nodes, kube-proxy Pods, the Service, its EndpointSlice, the policy)
    straight into the emulator's store, not through its API: no setup request is served or counted."""
    shared_intent_watch: bool = False
    """One RemediationIntent watch for every agent, each event put into every agent's inbox in
    order, rather than a watch per agent. An agent started again later sees only the events after
    its start."""
    on_intent_event: IntentListener | None = None
    """With the shared intent watch: told of each event as the watch delivers it."""
    agent_start_spread: float = 0.0
    """Start the agents in waves of 100 over this many seconds, as DaemonSet pods start at different
    times, so that their sensing rounds are not synchronised; 0: all at once."""
    emulator: type[KubernetesApiEmulator] = KubernetesApiEmulator
    history_size: int = 5000
    """Watch events the emulator keeps for watches that resume."""
    connection_limit: int = 100
    """HTTP connections the agents' shared client opens to the emulator at once (aiohttp's default)."""


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


class RecordingAgent(NodeAgent):
    """The agent, keeping every result it makes in ``results`` (it keeps only its recent ones)."""

    def __init__(
        self, settings: AgentSettings, dataplane: NodeDataplane, results: list[IntentResult]
    ) -> None:
        super().__init__(settings, dataplane)
        self.results = results
        self.received: dict[str, float] = {}
        """Intent name → when its watch first delivered it here (the benchmarks' latency stages)."""

    async def on_intent(self, raw: object) -> IntentResult | None:
        meta = raw.get("metadata") if isinstance(raw, Mapping) else None
        if isinstance(meta, Mapping) and isinstance(name := meta.get("name"), str):
            self.received.setdefault(name, time.time())
        result = await super().on_intent(raw)
        if result is not None:
            self.results.append(result)
        return result


def sim_node(spec: NodeSpec, index: int, settings: WorldSettings, desired: dict[Any, Any]) -> SimNode:
    """The ``index``-th node: its modelled kernel, its kube-proxy started with ``desired`` programmed,
    and its DNS clients."""
    model = ModelledNode(
        time.time,
        ModelConfig(
            kernel_version=spec.kernel,
            expire_nodest_conn=spec.expire_nodest_conn,
            expire_quiescent_template=spec.expire_quiescent_template,
            conntrack_max=spec.conntrack_max,
        ),
        alive=[ipaddress.ip_address(ip) for ip in settings.backends],
    )
    kube_proxy = KubeProxySim(
        spec.name, model, min_sync_period=settings.min_sync_period, sync_period=settings.sync_period
    )
    clients = clients_for(spec.name, index, DNS_VIP, settings.clients_per_node)
    kube_proxy.restart(desired, time.time())
    kube_proxy.restarts = 0
    return SimNode(spec, model, kube_proxy, clients)


async def tick_nodes(nodes: list[SimNode], traffic: bool, chunk: int) -> None:
    """One tick of each node's kube-proxy, and of its DNS clients when ``traffic``; ``chunk`` nodes
    at a time, so that a large cluster's tick lets the rest of the loop (the API, the agents) run."""
    for offset in range(0, len(nodes), chunk):
        now = time.time()
        for node in nodes[offset : offset + chunk]:
            node.kube_proxy.tick(now)
            if traffic:
                for client in node.clients:
                    client.query(node.model, now)
        await asyncio.sleep(0)


def node_agent(node: SimNode, settings: WorldSettings, results: list[IntentResult]) -> RecordingAgent:
    """ProxyMedic's agent for a simulated node: its dataplane is the node's modelled kernel, its
    kube-proxy probe the node's simulated kube-proxy."""
    name = node.spec.name
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
    agent_settings = AgentSettings(
        node_name=name,
        sense_interval=settings.agent_sense_interval,
        heartbeat=settings.agent_heartbeat,
        min_write_interval=settings.agent_min_write_interval,
        sense=SenseSettings(
            stale_after_seconds=settings.agent_stale_after, settle_seconds=settings.agent_settle
        ),
    )
    return RecordingAgent(agent_settings, dataplane, results)


class InboxRunner(AgentRunner):
    """The agent's runner, fed from the world's shared intent and policy watches instead of watches
    of its own."""

    def __init__(self, client: KubeClient, agent: NodeAgent) -> None:
        super().__init__(client, agent)
        self.inbox: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    async def _watch_intents(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            event_type, obj = await self.inbox.get()
            await self.handle(event_type, obj)

    async def _watch_policies(self, stop: asyncio.Event) -> None:
        await stop.wait()  # the world's shared policy watch calls policies_listed and policy_event


class World:
    """``async with World(settings) as world:`` builds the cluster and runs it until the block ends."""

    def __init__(self, settings: WorldSettings) -> None:
        self.settings = settings
        self.nodes: dict[str, SimNode] = {}
        self.pods = DnsPods(dict.fromkeys(settings.backends, "ready"))
        """Backend IP → ready | terminating (still answering, not ready) | gone."""
        self._operators: dict[str, RunningOperator] = {}
        """Running operators by key: ``"operator"``, and any other started with a key of its own."""
        self.agents: dict[str, AgentRunner] = {}
        self.results: dict[str, list[IntentResult]] = {}
        """Node → every intent result its agents made, in order."""
        self.traffic = False
        self.out_of_use_at: dict[str, float] = {}
        """Backend IP → when the EndpointSlice change that took it out of use was sent."""
        self.tick_seconds: list[float] = []
        """How long each tick of every node's kube-proxy and DNS clients took."""
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
        emulator = self.settings.emulator(keep_requests=False, history_size=self.settings.history_size)
        self.emulator = await self._exit.enter_async_context(serve(emulator))
        for info in KINDS:
            self.emulator.register_crd(build_crd(info))
        for crd in kopf_peering_crds():
            self.emulator.register_crd(crd)
        url = str(self.emulator.url).rstrip("/")
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=None),
            connector=aiohttp.TCPConnector(limit=self.settings.connection_limit),
        )
        self._exit.push_async_callback(session.close)
        self.client = await self._exit.enter_async_context(
            KubeClient(Connection(server=url, ssl_context=False), session=session)
        )
        for index, spec in enumerate(self.settings.nodes, start=1):
            self._add_node(spec, index)
        await self._create_objects()
        self._spawn(self._tick(), "ticker")
        self._spawn(self._watch_kube_proxy_pods(), "kube-proxy-pods")
        if self.settings.with_proxymedic:
            await self._start_proxymedic(url)
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
        self.nodes[spec.name] = sim_node(spec, index, self.settings, self.desired())

    async def _start_proxymedic(self, url: str) -> None:
        self.url = url
        self.start_operator()
        names = list(self.nodes)
        wave = 100
        pause = self.settings.agent_start_spread / max(1, -(-len(names) // wave))
        for start in range(0, len(names), wave):
            for name in names[start : start + wave]:
                self.start_agent(name)
            if pause > 0:
                await asyncio.sleep(pause)
        if self.settings.shared_intent_watch:
            self._spawn(self._share_intents(), "intents")
            self._spawn(self._share_policies(), "policies")

    def start_operator(self, options: OperatorOptions | None = None, key: str = "operator") -> None:
        """Run ProxyMedic's operator (again): it rebuilds its state from the watches.

        It gets a thread and an event loop of its own, as it would get a process: Kopf cancels
        every task of its loop when it stops, the emulator's too if they shared one. Another
        ``key`` (with options of its own, e.g. peering) runs one more replica beside it. With
        ``operator_process`` it gets a process.
        """
        options = options or self.settings.operator
        operator: RunningOperator
        if self.settings.operator_process:
            workdir = Path(tempfile.mkdtemp(prefix="proxymedic-sim-"))
            operator = OperatorProcess(self.url, workdir, options)
        else:
            operator = OperatorThread(self.url, options)
        self._operators[key] = operator
        operator.start()

    @property
    def controller(self) -> Controller | None:
        return self.controller_of("operator")

    def controller_of(self, key: str) -> Controller | None:
        operator = self._operators.get(key)
        return operator.controller if operator is not None else None

    def operator_pid(self, key: str = "operator") -> int | None:
        """The operator's process id where it runs in a process of its own."""
        operator = self._operators.get(key)
        return operator.pid if isinstance(operator, OperatorProcess) else None

    def start_agent(self, name: str) -> None:
        """Run the agent of one node (again): a new process has no memory of what it applied."""
        agent = node_agent(self.nodes[name], self.settings, self.results.setdefault(name, []))
        shared = self.settings.shared_intent_watch
        runner = InboxRunner(self.client, agent) if shared else AgentRunner(self.client, agent)
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

    async def _share_intents(self) -> None:
        """One watch of RemediationIntents, every event delivered to every agent's inbox."""
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    items, version = await self.client.list(INTENTS)
                    for item in sorted(items, key=lambda o: o.get("spec", {}).get("decidedAt", "")):
                        self._deliver("ADDED", item)
                async for event in self.client.watch(INTENTS, version):
                    version = event.resource_version or version
                    if event.type != "BOOKMARK":
                        self._deliver(event.type, event.object)
            except GoneError:
                version = ""
            except Exception:
                logger.warning("shared intent watch failed; relisting", exc_info=True)
                version = ""
                await asyncio.sleep(0.1)

    async def _share_policies(self) -> None:
        """One watch of policies, for every agent the lists of virtual servers to look up."""
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    items, version = await self.client.list(POLICIES)
                    for runner in self._inbox_runners():
                        runner.policies_listed(items)
                async for event in self.client.watch(POLICIES, version):
                    version = event.resource_version or version
                    if event.type != "BOOKMARK":
                        for runner in self._inbox_runners():
                            runner.policy_event(event.type, event.object)
            except GoneError:
                version = ""
            except Exception:
                logger.warning("shared policy watch failed; relisting", exc_info=True)
                version = ""
                await asyncio.sleep(0.1)

    def _inbox_runners(self) -> list[InboxRunner]:
        return [runner for runner in self.agents.values() if isinstance(runner, InboxRunner)]

    def _deliver(self, event_type: str, obj: dict[str, Any]) -> None:
        if self.settings.on_intent_event is not None:
            self.settings.on_intent_event(event_type, obj)
        for runner in self.agents.values():
            if isinstance(runner, InboxRunner):
                runner.inbox.put_nowait((event_type, obj))

    # --- the cluster's objects ---------------------------------------------------------------

    async def _seed(self, resource: Resource, body: dict[str, Any], namespace: str | None = None) -> None:
        if self.settings.seed_through_store:
            spec = self.emulator.spec(resource.api_version, resource.plural)
            self.emulator.store.create(spec, namespace, body)
        else:
            await self.client.create(resource, body, namespace)

    async def _create_objects(self) -> None:
        for name in self.nodes:
            await self._seed(
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
            await self._seed(PODS, kube_proxy_pod(name), "kube-system")
        options = self.settings.operator
        if self.settings.with_proxymedic and not options.standalone:
            # Peering replicas need their ClusterKopfPeering object, as the chart installs it.
            await self._seed(
                KOPF_PEERINGS,
                {
                    "apiVersion": "kopf.dev/v1",
                    "kind": "ClusterKopfPeering",
                    "metadata": {"name": options.peering_name},
                },
            )
        await self._seed(SERVICES, dns_service(), DNS_NAMESPACE)
        await self._seed(ENDPOINT_SLICES, self.pods.endpoint_slice(), DNS_NAMESPACE)
        if self.settings.with_proxymedic:
            await self._seed(
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

    async def _publish(self) -> float:
        """Send the EndpointSlice as the pods are now; then every kube-proxy learns of it. Returns
        when the change was sent."""
        sent = time.time()
        await self.client.patch(
            ENDPOINT_SLICES, SLICE_NAME, {"endpoints": self.pods.endpoints()}, DNS_NAMESPACE
        )
        self._want(time.time())
        return sent

    def _want(self, now: float) -> None:
        """Tell every node's kube-proxy the cluster's current state (a healthy watch would)."""
        desired = self.desired()
        for node in self.nodes.values():
            node.kube_proxy.want(desired, now)

    def _set_alive(self, ip: str, alive: bool) -> None:
        address = ipaddress.ip_address(ip)
        for node in self.nodes.values():
            node.model.set_alive(address, alive)

    # --- what happens to the cluster ---------------------------------------------------------

    async def add_backend(self, ip: str) -> None:
        self.pods[ip] = "ready"
        self._set_alive(ip, True)
        await self._publish()

    async def terminate_backend(self, ip: str, lameduck: float) -> None:
        """Graceful termination (``lameduck`` > 0): not ready at once, still answering for ``lameduck``
        seconds, then gone. Killed (``lameduck`` == 0): gone at once, its endpoint removed by the
        same change."""
        if lameduck > 0:
            await self.stop_ready(ip)
            await asyncio.sleep(lameduck)
            await self.remove_backend(ip)
        else:
            await self.kill_backend(ip)

    async def stop_ready(self, ip: str) -> None:
        """The pod starts terminating: no longer ready, still answering (its lameduck begins)."""
        self.pods[ip] = "terminating"
        self.out_of_use_at[ip] = await self._publish()

    async def remove_backend(self, ip: str) -> None:
        """The pod is gone: it answers nothing any more."""
        was_ready = self.pods.get(ip) == "ready"
        self.pods[ip] = "gone"
        self._set_alive(ip, False)
        sent = await self._publish()
        if was_ready:
            self.out_of_use_at[ip] = sent

    async def kill_backend(self, ip: str) -> None:
        """The pod dies and its endpoint goes in the same instant (for the simulated kube-proxy too):
        no query is lost to how long this process takes to send the change."""
        self.pods[ip] = "gone"
        self._want(time.time())
        self._set_alive(ip, False)
        self.out_of_use_at[ip] = await self._publish()

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
        """Every node's kube-proxy and DNS clients, once per query interval."""
        while True:
            started = time.monotonic()
            await tick_nodes(list(self.nodes.values()), self.traffic, chunk=500)
            spent = time.monotonic() - started
            self.tick_seconds.append(spent)
            await asyncio.sleep(max(0.0, self.settings.query_interval - spent))

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
                logger.debug("kube-proxy pod watch restarted", exc_info=True)
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

    def agents_reported(self) -> bool:
        """Every agent has written its NodeProxyHealth's status at least once."""
        return all(runner.writes for runner in self.agents.values())

    async def policy_accepted(self, name: str = "coredns") -> bool:
        """The operator accepted the policy (it writes the policy's status once it has seen it)."""
        policy = await self.client.get(POLICIES, name)
        conditions = (policy.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Accepted" and c.get("status") == "True" for c in conditions)

    def settled(self) -> bool:
        """Every agent reported, and the operator has seen the reports, the policy and the Service
        (an operator in a process of its own cannot be asked: see ``policy_accepted``)."""
        if not self.agents_reported():
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
