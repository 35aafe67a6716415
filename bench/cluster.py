"""A simulated cluster at scale: the API emulator, thousands of modelled nodes, the real operator
(a ``proxymedic operator`` subprocess with a kubeconfig) and the real agent code per node.

Each node has its own ``NodeAgent`` (own state, own modelled dataplane, own simulated
kube-proxy and DNS clients) driven by an ``AgentRunner``: creating its NodeProxyHealth,
reading its labels, sensing, reporting (``AgentRunner.report`` and ``status_patch``) and
executing intents (``AgentRunner.handle`` → ``NodeAgent.on_intent`` → the executor) are the
agent's own code. One thing is shared: a single RemediationIntent watch, whose events are
fanned out to every agent's inbox (each agent handles its events in order, as its own watch
would deliver them). All agents share one HTTP connection pool to the emulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import kmock

from proxymedic.agent.agent import AgentSettings, NodeAgent
from proxymedic.agent.node import NodeDataplane
from proxymedic.agent.runner import AgentRunner
from proxymedic.agent.sensing import SenseSettings
from proxymedic.api.crd import KINDS, build_crd
from proxymedic.api.health import IntentResult
from proxymedic.dataplane.kubeproxy import KubeProxyObservation
from proxymedic.emulator.connection import write_kubeconfig
from proxymedic.emulator.runner import serve
from proxymedic.emulator.server import KubernetesApiEmulator
from proxymedic.kube.client import Connection, GoneError, KubeClient
from proxymedic.kube.resources import ENDPOINT_SLICES, INTENTS, PODS, POLICIES
from proxymedic.sim.coredns import (
    DNS_NAMESPACE,
    DNS_VIP,
    POLICY,
    SLICE_NAME,
    DnsPods,
    dns_service,
    kube_proxy_pod,
)
from proxymedic.sim.kernel import ModelConfig, ModelledNode
from proxymedic.sim.kubeproxy import KubeProxySim, Stall
from proxymedic.sim.traffic import DnsClient

logger = logging.getLogger("bench")

Write = tuple[float, str, str, str, str]
"""(time, method, resource plural, subresource, object name) of one write request."""
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OLD_BACKENDS = ("10.244.100.10", "10.244.100.11")
NEW_BACKENDS = ("10.244.100.20", "10.244.100.21")


PRODUCTION_POLICY: dict[str, Any] = {key: value for key, value in POLICY.items() if key != "guardrails"}
"""The CoreDNS policy with the default guardrails (the demo's 2 s minimum observation removed)."""


@attrs.define(kw_only=True)
class CountingEmulator(KubernetesApiEmulator):
    """The emulator, recording every write request (time, method, resource plural, subresource)."""

    writes: list[Write] = attrs.field(factory=list)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        method = str(request.method).rsplit(".", 1)[-1].upper()
        if method in WRITE_METHODS:
            plural = request.resource.plural if request.resource is not None else ""
            self.writes.append(
                (
                    time.time(),
                    method,
                    str(plural or ""),
                    str(request.subresource or ""),
                    str(request.name or ""),
                )
            )
        return await super()._handle(request)


@dataclass
class NodeKind:
    """A class of nodes in a scenario."""

    name: str
    count: int
    kernel: tuple[int, int] = (6, 1)
    expire_nodest_conn: int = 1
    stall: Stall = Stall.NONE


@dataclass
class ClusterSettings:
    kinds: list[NodeKind]
    with_proxymedic: bool = True
    clients_per_node: int = 1
    query_interval: float = 0.1
    min_sync_period: float = 1.0
    sync_period: float = 30.0
    restart_delay: float = 0.5
    sense_interval: float = 10.0
    heartbeat: float = 300.0
    min_write_interval: float = 1.0
    stale_after: float = 60.0
    settle: float = 5.0
    housekeeping: str = "5s"
    policy: dict[str, Any] = field(default_factory=lambda: dict(POLICY))


@dataclass
class SimNode:
    name: str
    kind: NodeKind
    model: ModelledNode
    kube_proxy: KubeProxySim
    clients: list[DnsClient]


class FannedRunner(AgentRunner):
    """The agent's runner, fed from the shared intent watch instead of a watch of its own."""

    def __init__(self, client: KubeClient, agent: NodeAgent) -> None:
        super().__init__(client, agent)
        self.inbox: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.results: list[IntentResult] = []

    async def _watch_intents(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            event_type, obj = await self.inbox.get()
            before = len(self.agent._results)
            await self.handle(event_type, obj)
            if len(self.agent._results) != before:
                self.results.append(next(reversed(self.agent._results.values())))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class OperatorProcess:
    """``proxymedic operator --kubeconfig`` as a subprocess against the emulator."""

    def __init__(self, url: str, workdir: Path, housekeeping: str) -> None:
        self.kubeconfig = write_kubeconfig(url, workdir / "kubeconfig")
        self.log = workdir / "operator.log"
        self.housekeeping = housekeeping
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "proxymedic.cli.main",
                    "operator",
                    "--kubeconfig",
                    str(self.kubeconfig),
                    "--standalone",
                    "--metrics-port",
                    "0",
                    "--liveness-endpoint",
                    "",
                    "--housekeeping-interval",
                    self.housekeeping,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None


class Cluster:
    """``async with Cluster(settings) as cluster:`` builds the cluster and runs it until the block ends."""

    def __init__(self, settings: ClusterSettings) -> None:
        self.settings = settings
        self.nodes: dict[str, SimNode] = {}
        self.runners: dict[str, FannedRunner] = {}
        self.pods = DnsPods(dict.fromkeys(OLD_BACKENDS, "ready"))
        self.traffic = False
        self.patched_at: dict[str, float] = {}
        """Backend IP → when the EndpointSlice change that took it out of use was sent."""
        self.emulator: CountingEmulator
        self.client: KubeClient
        self.operator: OperatorProcess | None = None
        self._exit = contextlib.AsyncExitStack()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._workdir = Path(tempfile.mkdtemp(prefix="proxymedic-bench-"))
        self.tick_seconds: list[float] = []
        self.intents: dict[str, tuple[float, tuple[str, ...]]] = {}
        """Fast-path intents (all nodes): when the shared watch delivered them, and their dead backends."""

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Cluster:
        self.emulator = CountingEmulator(keep_requests=False, history_size=100_000)
        await self._exit.enter_async_context(serve(self.emulator))
        for info in KINDS:
            self.emulator.register_crd(build_crd(info))
        url = str(self.emulator.url).rstrip("/")
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=None),
            connector=aiohttp.TCPConnector(limit=200),
        )
        self.client = await self._exit.enter_async_context(
            KubeClient(Connection(server=url, ssl_context=False), session=session)
        )
        self._exit.push_async_callback(session.close)
        index = 0
        for kind in self.settings.kinds:
            for _ in range(kind.count):
                index += 1
                self._add_node(f"node-{index:05d}", index, kind)
        self._create_objects()
        self._spawn(self._tick())
        self._spawn(self._watch_kube_proxy_pods())
        if self.settings.with_proxymedic:
            self.operator = OperatorProcess(url, self._workdir, self.settings.housekeeping)
            self.operator.start()
            await self._start_agents()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self.operator is not None:
            await asyncio.to_thread(self.operator.stop)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._exit.aclose()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        self._tasks.append(asyncio.ensure_future(coro))

    def _add_node(self, name: str, index: int, kind: NodeKind) -> None:
        model = ModelledNode(
            time.time,
            ModelConfig(
                kernel_version=kind.kernel,
                expire_nodest_conn=kind.expire_nodest_conn,
                expire_quiescent_template=1,
            ),
            alive=[ipaddress.ip_address(ip) for ip in self.pods],
        )
        kube_proxy = KubeProxySim(
            name, model, min_sync_period=self.settings.min_sync_period, sync_period=self.settings.sync_period
        )
        base = ipaddress.ip_address("10.128.0.0") + 256 * index + 100
        clients = [
            DnsClient(node=name, address=(base + i, 40000 + i), vip=ipaddress.ip_address(DNS_VIP))
            for i in range(self.settings.clients_per_node)
        ]
        self.nodes[name] = SimNode(name, kind, model, kube_proxy, clients)
        kube_proxy.restart(self.desired(), time.time())
        kube_proxy.restarts = 0

    def _store_create(
        self, api_version: str, plural: str, namespace: str | None, body: dict[str, Any]
    ) -> None:
        """Setup objects go straight into the store: not API traffic worth measuring."""
        self.emulator.store.create(self.emulator.spec(api_version, plural), namespace, body)

    def _create_objects(self) -> None:
        for name in self.nodes:
            self._store_create(
                "v1",
                "nodes",
                None,
                {
                    "metadata": {
                        "name": name,
                        "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"},
                    }
                },
            )
            self._store_create("v1", "pods", "kube-system", kube_proxy_pod(name))
        self._store_create("v1", "services", DNS_NAMESPACE, dns_service())
        self._store_create("discovery.k8s.io/v1", "endpointslices", DNS_NAMESPACE, self.pods.endpoint_slice())
        if self.settings.with_proxymedic:
            self._store_create(
                "proxymedic.io/v1alpha1",
                "proxyhealthpolicies",
                None,
                {"metadata": {"name": "coredns"}, "spec": self.settings.policy},
            )

    # --- the agents ------------------------------------------------------------------------

    def _dataplane(self, node: SimNode) -> NodeDataplane:
        kube_proxy = node.kube_proxy

        async def probe() -> KubeProxyObservation:
            return kube_proxy.observation(time.time())

        return NodeDataplane(
            ipvs=node.model,
            connections=node.model,
            conntrack=node.model,
            sysctls=node.model,
            probe=probe,
            kernel_version=f"{node.kind.kernel[0]}.{node.kind.kernel[1]}.0-sim",
        )

    async def _start_agents(self) -> None:
        s = self.settings
        for name, node in self.nodes.items():
            settings = AgentSettings(
                node_name=name,
                sense_interval=s.sense_interval,
                heartbeat=s.heartbeat,
                min_write_interval=s.min_write_interval,
                sense=SenseSettings(stale_after_seconds=s.stale_after, settle_seconds=s.settle),
            )
            runner = FannedRunner(self.client, NodeAgent(settings, self._dataplane(node)))
            self.runners[name] = runner
        # Start the agents spread over one sensing interval, as DaemonSet pods start at different
        # times: their sensing rounds (and reports) are not synchronised across nodes.
        wave = 100
        names = list(self.runners)
        waves = max(1, -(-len(names) // wave))
        pause = min(self.settings.sense_interval, 10.0) / waves
        for start in range(0, len(names), wave):
            for name in names[start : start + wave]:
                self._spawn(self.runners[name].run(self._stop))
            await asyncio.sleep(pause)
        self._spawn(self._fan_out_intents())

    async def _fan_out_intents(self) -> None:
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
                logger.warning("intent watch failed; relisting", exc_info=True)
                version = ""
                await asyncio.sleep(0.1)

    def _deliver(self, event_type: str, obj: dict[str, Any]) -> None:
        spec = obj.get("spec") or {}
        name = str((obj.get("metadata") or {}).get("name", ""))
        if event_type == "ADDED" and spec.get("allNodes") and name not in self.intents:
            self.intents[name] = (time.time(), tuple(spec.get("deadBackends") or ()))
        for runner in self.runners.values():
            runner.inbox.put_nowait((event_type, obj))

    def agents_reported(self) -> bool:
        return all(runner.writes for runner in self.runners.values())

    async def operator_ready(self) -> bool:
        """The operator accepted the policy (it writes the policy's status once it has seen it)."""
        policy = await self.client.get(POLICIES, "coredns")
        conditions = (policy.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Accepted" and c.get("status") == "True" for c in conditions)

    async def wait_ready(self, within: float = 600.0) -> float:
        """Seconds until every agent has reported and the operator has accepted the policy."""
        started = time.monotonic()
        async with asyncio.timeout(within):
            while self.settings.with_proxymedic:
                if self.agents_reported() and await self.operator_ready():
                    break
                await asyncio.sleep(0.2)
        return time.monotonic() - started

    # --- the cluster's behaviour -------------------------------------------------------------

    def in_use(self) -> frozenset[str]:
        return self.pods.in_use()

    def desired(self) -> dict[Any, Any]:
        return self.pods.desired()

    async def _publish(self) -> float:
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

    async def add_backend(self, ip: str) -> None:
        self.pods[ip] = "ready"
        self._set_alive(ip, True)
        await self._publish()

    async def terminate_backend(self, ip: str, lameduck: float) -> None:
        """Graceful (lameduck > 0): not ready, still answering for lameduck seconds, then gone.
        Killed (lameduck == 0): gone at once, its endpoint removed by the same change."""
        if lameduck > 0:
            self.pods[ip] = "terminating"
            self.patched_at[ip] = await self._publish()
            await asyncio.sleep(lameduck)
            self.pods[ip] = "gone"
            self._set_alive(ip, False)
            await self._publish()
        else:
            # The pod dies and its endpoint goes in the same instant (for the simulated kube-proxy
            # too): no query is lost to how long this process takes to send the change.
            self.pods[ip] = "gone"
            self._want(time.time())
            self._set_alive(ip, False)
            self.patched_at[ip] = await self._publish()

    async def rollout(self, lameduck: float, surge_wait: float) -> None:
        """Replace both CoreDNS pods one at a time (maxSurge 1, maxUnavailable 0)."""
        old = [ip for ip, state in self.pods.items() if state == "ready"]
        for old_ip, new_ip in zip(old, NEW_BACKENDS, strict=False):
            await self.add_backend(new_ip)
            await asyncio.sleep(surge_wait)
            await self.terminate_backend(old_ip, lameduck)

    def stall(self) -> None:
        for node in self.nodes.values():
            node.kube_proxy.stall = node.kind.stall

    async def _tick(self) -> None:
        chunk = 500
        while True:
            started = time.monotonic()
            nodes = list(self.nodes.values())
            for offset in range(0, len(nodes), chunk):
                now = time.time()
                for node in nodes[offset : offset + chunk]:
                    node.kube_proxy.tick(now)
                    if self.traffic:
                        for client in node.clients:
                            client.query(node.model, now)
                await asyncio.sleep(0)
            spent = time.monotonic() - started
            self.tick_seconds.append(spent)
            await asyncio.sleep(max(0.0, self.settings.query_interval - spent))

    async def _watch_kube_proxy_pods(self) -> None:
        """The kube-proxy DaemonSet: a deleted pod comes back, and its kube-proxy starts afresh."""
        version = ""
        while True:
            try:
                if not version:
                    _, version = await self.client.list(PODS, "kube-system")
                async for event in self.client.watch(PODS, version, "kube-system", timeout_seconds=60):
                    version = event.resource_version or version
                    node = event.object.get("spec", {}).get("nodeName")
                    if event.type == "DELETED" and node in self.nodes:
                        self._spawn(self._recreate_kube_proxy(node))
            except Exception:
                version = ""
                await asyncio.sleep(0.1)

    async def _recreate_kube_proxy(self, node: str) -> None:
        await asyncio.sleep(self.settings.restart_delay)
        await self.client.create(PODS, kube_proxy_pod(node), "kube-system")
        self.nodes[node].kube_proxy.restart(self.desired(), time.time())

    # --- measuring -------------------------------------------------------------------------

    def repair_latencies(self) -> dict[str, list[float]]:
        """Per dead backend: seconds from its EndpointSlice change to each node's verified result."""
        by_backend: dict[str, list[float]] = {ip: [] for ip in self.patched_at}
        for runner in self.runners.values():
            for result in runner.results:
                intent = self.intents.get(result.intent)
                if intent is None:
                    continue
                for ip in intent[1]:
                    if ip in self.patched_at:
                        by_backend[ip].append(result.completed_at.timestamp() - self.patched_at[ip])
        return by_backend

    def writes_between(self, start: float, end: float) -> list[Write]:
        return [w for w in self.emulator.writes if start <= w[0] < end]


def count_by(writes: list[Write]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, method, plural, sub, _name in writes:
        key = f"{method} {plural}{'/' + sub if sub else ''}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def as_datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds)


Clock = Callable[[], float]
__all__ = ["Cluster", "ClusterSettings", "Mapping", "NodeKind", "count_by", "percentile"]
