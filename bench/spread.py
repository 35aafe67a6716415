"""The scale rollout with nothing serialized: the API server, the operator and the nodes each run in
processes of their own, and every agent has its own watches.

``bench/rollout.py`` runs the emulator and every agent in one event loop: at thousands of nodes
the agents' requests queue behind each other and behind the emulator's own work, and one shared
intent watch stands in for the agents' own. Here, as on a cluster:

- the API emulator serves from a process of its own (``python -m bench.spread apiserver``) and
  records every write request;
- the operator is ``proxymedic operator --kubeconfig``, in its process;
- the nodes are spread over ``workers`` processes (``python -m bench.spread nodes``): each holds
  its nodes' modelled kernels, simulated kube-proxies and DNS clients, and runs each node's real
  agent (``AgentRunner``) with its own intent and policy watches;
- this process plays the rest of the cluster: the rollout's EndpointSlice changes (telling the
  nodes' kube-proxies, as their watches would), the kube-proxy DaemonSet (a deleted pod comes
  back, its kube-proxy restarted), and a watch of intents that records when each reached a watcher.

The harness's own cost is measured beside the figures: each process's CPU seconds during the
rollout, and how late each worker's event loop ran. The result has the shape of
``bench.rollout.run``'s, plus ``harness``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import ssl
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.footprint import cpu_seconds
from bench.measured import NEW_BACKENDS, CountingEmulator, Scenario, Write, count_by, percentile
from bench.rollout import Timing, failure_bound, latency_summary, merge_stats, operator_quiet
from bench.spread_api import EmulatorServer, RealServer, cluster_objects, end_process, setup_document
from proxymedic.agent.runner import AgentRunner
from proxymedic.api.crd import KINDS, build_crd
from proxymedic.api.health import IntentResult
from proxymedic.emulator.resources import kopf_peering_crds
from proxymedic.emulator.runner import serve
from proxymedic.kube.client import Connection, GoneError, KubeClient
from proxymedic.kube.resources import ENDPOINT_SLICES, INTENTS, PODS, POLICIES
from proxymedic.sim.coredns import DNS_NAMESPACE, DNS_VIP, SLICE_NAME, DnsPods, kube_proxy_pod
from proxymedic.sim.kubeproxy import Stall
from proxymedic.sim.operators import OperatorProcess
from proxymedic.sim.traffic import ClientStats
from proxymedic.sim.world import (
    NodeSpec,
    RecordingAgent,
    SimNode,
    WorldSettings,
    node_agent,
    sim_node,
    tick_nodes,
)

logger = logging.getLogger("bench.spread")

WORKERS = 4
"""Node processes: enough that no one event loop holds more than a quarter of the agents."""
IDLE_WATCH_POLL = 5.0
"""How often the emulator checks an idle watch's client: 10,000 watches at the default 0.5 s
would wake its loop 20,000 times a second."""
RESULTS_WITHIN = 300.0
"""After the rollout's settle time, how long to wait for the nodes' results still missing."""
LOOP_PROBE = 0.1
"""Each worker measures its event loop's lateness with a sleep of this many seconds."""

# The WorldSettings fields a node process needs (the rest are the in-process World's choices).
_WORLD_FIELDS = (
    "backends",
    "clients_per_node",
    "query_interval",
    "min_sync_period",
    "sync_period",
    "agent_sense_interval",
    "agent_heartbeat",
    "agent_min_write_interval",
    "agent_stale_after",
    "agent_settle",
    "agent_start_spread",
)


# --- the API server's process ----------------------------------------------------------------


def _seed(emulator: CountingEmulator, setup: dict[str, Any]) -> None:
    """The cluster's objects, straight into the store: setup is not API traffic worth measuring."""
    for path, namespace, body in cluster_objects(setup):
        emulator.store.create(emulator.spec(body["apiVersion"], path.rsplit("/", 1)[1]), namespace, body)


async def apiserver_main(setup: dict[str, Any], url_file: Path) -> list[Write]:
    """Serve the emulator until SIGTERM; return every write request it served."""
    emulator = CountingEmulator(
        keep_requests=False, history_size=setup["history_size"], watch_idle_poll=IDLE_WATCH_POLL
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with serve(emulator):
        for info in KINDS:
            emulator.register_crd(build_crd(info))
        for crd in kopf_peering_crds():
            emulator.register_crd(crd)
        _seed(emulator, setup)
        await asyncio.to_thread(url_file.write_text, str(emulator.url).rstrip("/"))
        await stop.wait()
    return emulator.writes


# --- a node process ----------------------------------------------------------------------------


@dataclass
class _Node:
    sim: SimNode
    stall: Stall
    results: list[IntentResult] = field(default_factory=list)
    runner: AgentRunner | None = None
    agent: RecordingAgent | None = None


class NodeHost:
    """Some of the cluster's nodes, each with its agent; driven by commands on stdin."""

    def __init__(self, spec: dict[str, Any]) -> None:
        world = spec["world"]
        self.settings = WorldSettings(nodes=[], **{**world, "backends": tuple(world["backends"])})
        server = spec["server"]
        self.url: str = server["url"]
        self.ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=server["ca_file"]) if server["ca_file"] else False
        )
        self.tokens: dict[str, str] = server["tokens"]
        """Each agent's own token (bound to its Pod on its node), on a real API server."""
        self.pods = DnsPods(dict.fromkeys(self.settings.backends, "ready"))
        self.nodes: dict[str, _Node] = {}
        for item in spec["nodes"]:
            node_spec = NodeSpec(
                item["name"], tuple(item["kernel"]), item["expire_nodest_conn"], note=item["note"]
            )
            sim = sim_node(node_spec, item["index"], self.settings, self.pods.desired())
            self.nodes[item["name"]] = _Node(sim, Stall(item["stall"]))
        self.traffic = False
        self.tick_seconds: list[float] = []
        self.loop_lag: list[float] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=30, sock_read=None),
            connector=aiohttp.TCPConnector(limit=0),  # a connection per watch, as each agent has its own
        )
        async with session:
            tasks = [
                asyncio.create_task(self._tick()),
                asyncio.create_task(self._probe_loop()),
                asyncio.create_task(self._start_agents(session)),
            ]
            try:
                await self._commands()
            finally:
                self.stop.set()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _start_agents(self, session: aiohttp.ClientSession) -> None:
        """In waves of 100 spread over ``agent_start_spread`` seconds, as DaemonSet pods start."""
        names = list(self.nodes)
        wave = 100
        pause = self.settings.agent_start_spread / max(1, -(-len(names) // wave))
        runs = []
        for start in range(0, len(names), wave):
            for name in names[start : start + wave]:
                node = self.nodes[name]
                connection = Connection(server=self.url, token=self.tokens.get(name), ssl_context=self.ssl)
                client = KubeClient(connection, session=session)
                node.agent = node_agent(node.sim, self.settings, node.results)
                node.runner = AgentRunner(client, node.agent)
                runs.append(asyncio.create_task(node.runner.run(self.stop), name=f"agent:{name}"))
            if pause > 0:
                await asyncio.sleep(pause)
        await asyncio.gather(*runs, return_exceptions=True)

    async def _tick(self) -> None:
        """Every node's kube-proxy and DNS clients once per query interval, as ``World`` ticks them."""
        while True:
            started = time.monotonic()
            await tick_nodes([node.sim for node in self.nodes.values()], self.traffic, chunk=250)
            spent = time.monotonic() - started
            self.tick_seconds.append(spent)
            await asyncio.sleep(max(0.0, self.settings.query_interval - spent))

    async def _probe_loop(self) -> None:
        """How late this process's event loop runs: what its agents' requests wait on besides the API."""
        while True:
            started = time.monotonic()
            await asyncio.sleep(LOOP_PROBE)
            self.loop_lag.append(time.monotonic() - started - LOOP_PROBE)

    async def _commands(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            command = json.loads(line)
            reply = {**self.command(command), "id": command.get("id")}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
            if command["op"] == "quit":
                return

    def command(self, command: dict[str, Any]) -> dict[str, Any]:
        op, now = command["op"], time.time()
        if op == "status":
            reported = sum(1 for n in self.nodes.values() if n.runner is not None and n.runner.writes)
            return {"reported": reported}
        if op == "results":
            return {"count": sum(len(n.results) for n in self.nodes.values())}
        if op == "pods":  # the EndpointSlice change, as each kube-proxy's watch delivers it
            self.pods.clear()
            self.pods.update(command["pods"])
            desired = self.pods.desired()
            for node in self.nodes.values():
                node.sim.kube_proxy.want(desired, now)
        elif op == "alive":
            address = ipaddress.ip_address(command["ip"])
            for node in self.nodes.values():
                node.sim.model.set_alive(address, command["alive"])
        elif op == "traffic":
            self.traffic = command["on"]
        elif op == "stall":
            for node in self.nodes.values():
                node.sim.kube_proxy.stall = node.stall
        elif op == "heartbeat":
            for node in self.nodes.values():
                if node.runner is not None:
                    node.runner.agent.settings.heartbeat = command["seconds"]
        elif op == "restart":  # its pod came back: kube-proxy starts afresh
            if (target := self.nodes.get(command["node"])) is not None:
                target.sim.kube_proxy.restart(self.pods.desired(), now)
        elif op == "collect":
            return self._collect(command["ended"])
        return {}

    def _collect(self, ended: float) -> dict[str, Any]:
        nodes: dict[str, Any] = {}
        for name, node in self.nodes.items():
            received = node.agent.received if node.agent is not None else {}
            for client in node.sim.clients:
                client.stats.close(ended)
            failing = any(c.stats.failing_at_end for c in node.sim.clients)
            nodes[name] = {
                "note": node.sim.spec.note,
                "stats": [_stats_fields(c.stats) for c in node.sim.clients],
                "bound": failure_bound(node.sim) if failing else 0.0,
                "failing": failing,
                "restarts": node.sim.kube_proxy.restarts,
                "results": [
                    (r.intent, r.completed_at.timestamp(), r.duration_seconds, received.get(r.intent))
                    for r in node.results
                ],
            }
        return {"nodes": nodes, "ticks": self.tick_seconds, "loop_lag": self.loop_lag}


def _stats_fields(stats: ClientStats) -> dict[str, Any]:
    return {k: v for k, v in asdict(stats).items() if not k.startswith("_")}


async def nodes_main(spec: dict[str, Any]) -> None:
    await NodeHost(spec).run()


# --- this process: the rest of the cluster -------------------------------------------------------


class NodeProcess:
    """A node process and the commands it answers, one at a time."""

    def __init__(self, process: asyncio.subprocess.Process, names: list[str]) -> None:
        self.process = process
        self.names = frozenset(names)
        self._lock = asyncio.Lock()
        self._sent = 0

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Send a command and return its reply. Each reply names its command: a call cancelled
        after sending (a timeout around it) leaves its reply behind, which the next call skips."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        async with self._lock:
            self._sent += 1
            number = self._sent
            self.process.stdin.write((json.dumps({"op": op, "id": number, **args}) + "\n").encode())
            await self.process.stdin.drain()
            while True:
                line = await self.process.stdout.readline()
                if not line:
                    raise RuntimeError(f"node process {self.process.pid} exited ({self.process.returncode})")
                reply: dict[str, Any] = json.loads(line)
                if reply.get("id") == number:
                    return reply


class SpreadCluster:
    """``async with SpreadCluster(scenario, workdir, workers, api) as cluster:`` starts the API server
    (``"emulator"`` or ``"real"``), the operator and the node processes; the block drives the
    cluster; leaving it stops them all."""

    def __init__(
        self, scenario: Scenario, workdir: Path, workers: int = WORKERS, api: str = "emulator"
    ) -> None:
        self.scenario = scenario
        self.settings = scenario.settings
        self.workdir = workdir
        self.worker_count = max(1, min(workers, len(self.settings.nodes)))
        self.server: EmulatorServer | RealServer = (
            RealServer(workdir) if api == "real" else EmulatorServer(workdir)
        )
        self.pods = DnsPods(dict.fromkeys(self.settings.backends, "ready"))
        self.out_of_use_at: dict[str, float] = {}
        self.intents: dict[str, tuple[float, tuple[str, ...]]] = {}
        """Fast-path intents (all nodes): when this process's watch saw them, and their dead backends."""
        self.decided: dict[str, float] = {}
        """Those intents' ``decidedAt``: when the operator decided them."""
        self.writes: list[Write] = []
        self.workers: list[NodeProcess] = []
        self.client: KubeClient
        self._operator: OperatorProcess | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._exit = contextlib.AsyncExitStack()
        self._recreating: set[str] = set()

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> SpreadCluster:
        try:
            await self._start()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def _start(self) -> None:
        settings = self.settings
        server = self.server
        await server.start(setup_document(settings))
        self.client = await self._exit.enter_async_context(KubeClient(server.connection()))
        self._tasks.append(asyncio.create_task(self._watch_intents()))
        self._tasks.append(asyncio.create_task(self._watch_kube_proxy_pods()))
        if settings.with_proxymedic:
            self._operator = OperatorProcess(server.url, self.workdir, settings.operator)
            self._operator.kubeconfig = server.operator_kubeconfig()
            self._operator.start()
        world = {name: getattr(settings, name) for name in _WORLD_FIELDS}
        world["backends"] = list(settings.backends)
        tokens = server.agent_tokens()
        share = -(-len(settings.nodes) // self.worker_count)
        numbered = list(enumerate(settings.nodes, start=1))
        for number in range(self.worker_count):
            chunk = numbered[number * share : (number + 1) * share]
            nodes: list[dict[str, Any]] = [
                {
                    "name": spec.name,
                    "index": index,
                    "kernel": list(spec.kernel),
                    "expire_nodest_conn": spec.expire_nodest_conn,
                    "note": spec.note,
                    "stall": self._stall_of(spec).value,
                }
                for index, spec in chunk
            ]
            names = [node["name"] for node in nodes]
            connection = {
                "url": server.url,
                "ca_file": server.ca_file,
                "tokens": {name: tokens[name] for name in names if name in tokens},
            }
            spec_file = self.workdir / f"nodes-{number}.json"
            spec_file.write_text(json.dumps({"world": world, "server": connection, "nodes": nodes}))
            with (self.workdir / f"nodes-{number}.log").open("wb") as log:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bench.spread",
                    "nodes",
                    "--spec",
                    str(spec_file),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=log,
                    limit=2**27,  # a worker's collected results come as one line
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            self.workers.append(NodeProcess(process, names))

    def _stall_of(self, spec: NodeSpec) -> Stall:
        kinds = {kind.name: kind for kind in self.scenario.kinds}
        return kinds[spec.note].stall

    async def __aexit__(self, *exc: object) -> None:
        for worker in self.workers:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(30):
                    await worker.call("quit")
            await end_process(worker.process)
        if self._operator is not None:
            await asyncio.to_thread(self._operator.stop)
            self._operator = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._exit.aclose()
        await self.server.stop()
        self.writes = self.server.writes()

    # --- the processes -----------------------------------------------------------------------

    def pids(self) -> dict[str, list[int]]:
        """Each role's processes."""
        pids: dict[str, list[int]] = {"coordinator": [os.getpid()], "apiserver": self.server.pids()}
        if self._operator is not None:
            pids["operator"] = [self._operator.pid]
        pids["nodes"] = [worker.process.pid for worker in self.workers]
        return pids

    def cpu(self) -> dict[str, float]:
        return {role: sum(cpu_seconds(pid) for pid in pids) for role, pids in self.pids().items()}

    def operator_pid(self) -> int | None:
        return self._operator.pid if self._operator is not None else None

    async def broadcast(self, op: str, **args: Any) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(worker.call(op, **args) for worker in self.workers)))

    async def results(self) -> int:
        """Intent results the agents have made so far."""
        return sum(reply["count"] for reply in await self.broadcast("results"))

    async def wait_results(self, count: int, every: float = 1.0) -> None:
        """Return once the agents have made ``count`` intent results (bounded by the caller)."""
        made = await self.results()
        while made < count:
            await asyncio.sleep(every)
            made = await self.results()

    async def reported(self) -> int:
        return sum(reply["reported"] for reply in await self.broadcast("status"))

    async def policy_accepted(self) -> bool:
        policy = await self.client.get(POLICIES, "coredns")
        conditions = (policy.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Accepted" and c.get("status") == "True" for c in conditions)

    async def wait_ready(self, within: float = 900.0) -> float:
        """Seconds until every agent has reported and the operator has accepted the policy."""
        started = time.monotonic()
        async with asyncio.timeout(within):
            while self.settings.with_proxymedic:
                if await self.reported() == len(self.settings.nodes) and await self.policy_accepted():
                    break
                await asyncio.sleep(1.0)
        return time.monotonic() - started

    # --- what happens to the cluster -----------------------------------------------------------

    async def _publish(self) -> float:
        """Send the EndpointSlice as the pods are now; then every node's kube-proxy learns of it."""
        sent = time.time()
        await self.client.patch(
            ENDPOINT_SLICES, SLICE_NAME, {"endpoints": self.pods.endpoints()}, DNS_NAMESPACE
        )
        await self.broadcast("pods", pods=dict(self.pods))
        return sent

    async def add_backend(self, ip: str) -> None:
        self.pods[ip] = "ready"
        await self.broadcast("alive", ip=ip, alive=True)
        await self._publish()

    async def terminate_backend(self, ip: str, lameduck: float) -> None:
        """Not ready at once, still answering for ``lameduck`` seconds, then gone (as World's)."""
        self.pods[ip] = "terminating"
        self.out_of_use_at[ip] = await self._publish()
        await asyncio.sleep(lameduck)
        self.pods[ip] = "gone"
        await self.broadcast("alive", ip=ip, alive=False)
        await self._publish()

    async def rollout(self, new_ips: list[str], lameduck: float, surge_wait: float) -> None:
        """Replace every current backend with a new one, one at a time (maxSurge 1, maxUnavailable 0)."""
        old = [ip for ip, state in self.pods.items() if state == "ready"]
        for old_ip, new_ip in zip(old, new_ips, strict=False):
            await self.add_backend(new_ip)
            await asyncio.sleep(surge_wait)
            await self.terminate_backend(old_ip, lameduck)

    async def _watch_intents(self) -> None:
        version = ""
        while True:
            try:
                if not version:
                    items, version = await self.client.list(INTENTS)
                    for item in items:
                        self._seen("ADDED", item)
                async for event in self.client.watch(INTENTS, version):
                    version = event.resource_version or version
                    self._seen(event.type, event.object)
            except GoneError:
                version = ""
            except Exception:
                logger.warning("intent watch failed; relisting", exc_info=True)
                version = ""
                await asyncio.sleep(0.1)

    def _seen(self, event_type: str, obj: dict[str, Any]) -> None:
        spec = obj.get("spec") or {}
        name = str((obj.get("metadata") or {}).get("name", ""))
        if event_type == "ADDED" and spec.get("allNodes") and name not in self.intents:
            self.intents[name] = (time.time(), tuple(spec.get("deadBackends") or ()))
            with contextlib.suppress(KeyError, TypeError, ValueError):
                self.decided[name] = datetime.fromisoformat(spec["decidedAt"]).timestamp()

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
                    if event.type == "DELETED" and node and node not in self._recreating:
                        self._recreating.add(node)
                        self._tasks.append(asyncio.create_task(self._recreate(node)))
            except Exception:
                logger.debug("kube-proxy pod watch restarted", exc_info=True)
                version = ""
                await asyncio.sleep(0.1)

    async def _recreate(self, node: str) -> None:
        try:
            await asyncio.sleep(self.settings.restart_delay)
            await self.client.create(PODS, kube_proxy_pod(node), "kube-system")
            for worker in self.workers:
                if node in worker.names:
                    await worker.call("restart", node=node)
        finally:
            self._recreating.discard(node)

    def writes_between(self, start: float, end: float) -> list[Write]:
        return [w for w in self.writes if start <= w[0] < end]


def _lag(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50), "p99": percentile(values, 99), "max": max(values, default=0.0)}


async def run(
    scenario: Scenario,
    timing: Timing,
    label: str = "",
    production_heartbeat: float | None = None,
    workers: int = WORKERS,
    api: str = "real",
    steady_heartbeat: float | None = None,
) -> dict[str, Any]:
    """The rollout of ``bench.rollout.run`` on a cluster spread over processes.

    ``steady_heartbeat``: the agents start with the scenario's heartbeat (the production one, so
    that thousands of agents starting do not flood the API server with heartbeats), and switch
    to this one for the steady-state window, after one period has let the writes now due pass."""
    t_build = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="proxymedic-spread-"))
    cluster = SpreadCluster(scenario, workdir, workers, api)
    async with cluster:
        ready_after = await cluster.wait_ready()
        await cluster.broadcast("traffic", on=True)
        await asyncio.sleep(timing.warm_up)
        if steady_heartbeat is not None and timing.steady > 0:
            await cluster.broadcast("heartbeat", seconds=steady_heartbeat)
            await asyncio.sleep(steady_heartbeat + scenario.settings.agent_sense_interval)
        steady_from = time.time()
        await asyncio.sleep(timing.steady)
        steady_to = time.time()
        if production_heartbeat is not None:
            await cluster.broadcast("heartbeat", seconds=production_heartbeat)
        quiet_after = await operator_quiet(cluster.operator_pid())
        await cluster.broadcast("stall")
        cpu_before = cluster.cpu()
        started = time.time()
        await cluster.rollout(NEW_BACKENDS, lameduck=timing.lameduck, surge_wait=timing.surge_wait)
        await asyncio.sleep(timing.settle)
        cpu_after, settled = cluster.cpu(), time.time()
        # A latency is a latency only if the slow nodes are in it: wait for every node's results.
        waited = time.monotonic()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RESULTS_WITHIN):
                await cluster.wait_results(len(NEW_BACKENDS) * len(scenario.settings.nodes))
        waited_for_results = time.monotonic() - waited
        await cluster.broadcast("traffic", on=False)
        ended = time.time()
        collected = await cluster.broadcast("collect", ended=ended)
    return _result(
        cluster,
        collected,
        timing,
        label,
        (started, settled, ended),
        (steady_from, steady_to),
        cpu_before,
        cpu_after,
    ) | {
        "ready_after": ready_after,
        "quiet_after": quiet_after,
        "waited_for_results": waited_for_results,
        "run_seconds": time.monotonic() - t_build,
    }


def _stages(cluster: SpreadCluster, nodes: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Where each node's repair latency went, in order: the operator (EndpointSlice change to the
    intent in a watch), the intent's delivery to the agent's own watch, the agent's read of the
    Service's EndpointSlices and the intent's checks, and the dataplane change itself."""
    operator, delivery, before, execute = [], [], [], []
    for data in nodes.values():
        for intent, completed_at, duration, received in data["results"]:
            _, dead = cluster.intents.get(intent, (None, ()))
            decided = cluster.decided.get(intent)
            changed = [cluster.out_of_use_at[ip] for ip in dead if ip in cluster.out_of_use_at]
            if decided is None or received is None or not changed:
                continue
            operator.append(decided - min(changed))
            delivery.append(received - decided)
            before.append(completed_at - duration - received)
            execute.append(duration)
    return {
        name: {"p50": percentile(values, 50), "p99": percentile(values, 99)}
        for name, values in (
            ("operator", operator),
            ("delivery", delivery),
            ("agent_checks", before),
            ("execute", execute),
        )
    }


def _result(
    cluster: SpreadCluster,
    collected: list[dict[str, Any]],
    timing: Timing,
    label: str,
    rollout: tuple[float, float, float],
    steady_window: tuple[float, float],
    cpu_before: dict[str, float],
    cpu_after: dict[str, float],
) -> dict[str, Any]:
    """``rollout``: when it started, when its settle time ended (the CPU window), when the wait
    for the slow nodes' results ended."""
    started, settled, ended = rollout
    settings = cluster.settings
    nodes = {name: data for reply in collected for name, data in reply["nodes"].items()}
    kinds: dict[str, dict[str, Any]] = {}
    bounds: dict[str, float | None] = {}
    for data in nodes.values():
        kind = kinds.setdefault(data["note"], {"nodes": 0, "stats": []})
        kind["nodes"] += 1
        kind["stats"].extend(ClientStats(**fields) for fields in data["stats"])
        if data["failing"]:
            previous = bounds.get(data["note"], 0.0)
            bound = data["bound"]
            bounds[data["note"]] = None if bound is None or previous is None else max(previous, bound)
    latencies: dict[str, list[float]] = {ip: [] for ip in cluster.out_of_use_at}
    for data in nodes.values():
        for intent, completed_at, _, _ in data["results"]:
            for ip in cluster.intents.get(intent, (0.0, ()))[1]:
                if ip in latencies:
                    latencies[ip].append(completed_at - cluster.out_of_use_at[ip])
    durations = [duration for data in nodes.values() for _, _, duration, _ in data["results"]]
    delivered = {
        ip: seen - cluster.out_of_use_at[ip]
        for seen, dead in cluster.intents.values()
        for ip in dead
        if ip in cluster.out_of_use_at
    }
    steady_from, steady_to = steady_window
    steady_writes = cluster.writes_between(steady_from, steady_to)
    rollout_writes = cluster.writes_between(started, settled)  # the rollout and its settle time
    bins: dict[int, int] = {}
    for write in cluster.writes_between(steady_from, ended):
        bins[int(write[0] - started)] = bins.get(int(write[0] - started), 0) + 1
    series = [(t, bins.get(t, 0)) for t in range(int(steady_from - started), int(ended - started) + 1)]
    restarts_by_kind: dict[str, int] = {}
    for data in nodes.values():
        restarts_by_kind[data["note"]] = restarts_by_kind.get(data["note"], 0) + data["restarts"]
    ticks = sorted(t for reply in collected for t in reply["ticks"])
    seconds = settled - started
    return {
        "label": label,
        "harness": {
            "kind": "spread",
            "api": "real" if isinstance(cluster.server, RealServer) else "emulator",
            "workers": len(cluster.workers),
            "cpu_seconds": {role: cpu_after[role] - cpu_before.get(role, 0.0) for role in cpu_after},
            "cpu_cores": {
                role: (cpu_after[role] - cpu_before.get(role, 0.0)) / (settled - started)
                for role in cpu_after
            },
            "loop_lag": [_lag(reply["loop_lag"]) for reply in collected],
            "machine_cores": os.cpu_count(),
        },
        "nodes": len(nodes),
        "with_proxymedic": settings.with_proxymedic,
        "lameduck": timing.lameduck,
        "query_interval": settings.query_interval,
        "clients_per_node": settings.clients_per_node,
        "rollout_seconds": seconds,
        "dns": {
            kind: {"nodes": data["nodes"], **merge_stats(data["stats"]), "bound": bounds.get(kind, 0.0)}
            for kind, data in kinds.items()
        },
        "latency": latency_summary(latencies, delivered, durations) | {"stages": _stages(cluster, nodes)},
        "steady_writes": {
            "seconds": steady_to - steady_from,
            "writes": len(steady_writes),
            "by_kind": count_by(steady_writes),
        },
        "rollout_writes": {
            "seconds": seconds,
            "writes": len(rollout_writes),
            "by_kind": count_by(rollout_writes),
        },
        "kube_proxy_restarts": sum(restarts_by_kind.values()),
        "kube_proxy_restarts_by_kind": restarts_by_kind,
        "write_series": series,
        "tick_p50": percentile(ticks, 50),
        "vip": DNS_VIP,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spread", description=__doc__.splitlines()[0])
    roles = parser.add_subparsers(dest="role", required=True)
    apiserver = roles.add_parser("apiserver", help="serve the emulator (started by the harness)")
    apiserver.add_argument("--setup", type=Path, required=True)
    apiserver.add_argument("--url-file", type=Path, required=True)
    apiserver.add_argument("--writes-file", type=Path, required=True)
    nodes = roles.add_parser("nodes", help="run some nodes and their agents (started by the harness)")
    nodes.add_argument("--spec", type=Path, required=True)
    rollout = roles.add_parser("rollout", help="one rollout at scale, printed as JSON")
    rollout.add_argument("--nodes", type=int, default=100)
    rollout.add_argument("--workers", type=int, default=WORKERS)
    rollout.add_argument("--api", choices=("emulator", "real"), default="real")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # Stopped by a signal, the harness still stops what it started (the API server above all).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.role == "apiserver":
        writes = asyncio.run(apiserver_main(json.loads(args.setup.read_text()), args.url_file))
        args.writes_file.write_text(json.dumps(writes))
    elif args.role == "nodes":
        asyncio.run(nodes_main(json.loads(args.spec.read_text())))
    else:
        from bench.run_all import PRODUCTION_HEARTBEAT, scale_settings

        timing = Timing(warm_up=3.0, steady=0.0, surge_wait=1.0, lameduck=2.0, settle=8.0)
        result = asyncio.run(
            run(
                scale_settings(args.nodes, PRODUCTION_HEARTBEAT),
                timing,
                f"{args.nodes} nodes",
                None,
                args.workers,
                args.api,
            )
        )
        result.pop("write_series", None)
        print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["SpreadCluster", "main", "run"]
