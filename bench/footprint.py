"""Memory and CPU of the real processes: ``proxymedic operator`` with many Services and endpoints
under churn, and ``proxymedic agent`` idle (its kernel adapters, and its code path on the
modelled dataplane).

Each process runs against the API emulator, which lives in this (the benchmark's) process, except
the agent in a pod's configuration: it runs against a real kube-apiserver with a pod's service
account. RSS comes from /proc/PID/status (VmRSS), CPU from /proc/PID/stat (utime + stime).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from proxymedic.api.crd import KINDS, build_crd
from proxymedic.emulator.connection import write_kubeconfig
from proxymedic.emulator.runner import serve
from proxymedic.emulator.server import KubernetesApiEmulator
from proxymedic.kube.client import Connection, KubeClient
from proxymedic.kube.resources import ENDPOINT_SLICES, NODE_HEALTHS

if TYPE_CHECKING:
    from tests.realk8s.binaries import Binaries
    from tests.realk8s.controlplane import ControlPlane

TICKS = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


@dataclass
class Sample:
    at: float
    rss_mb: float
    cpu_s: float


class Sampler:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[Sample] = []

    def take(self) -> Sample:
        sample = Sample(time.monotonic(), rss_mb(self.pid), cpu_seconds(self.pid))
        self.samples.append(sample)
        return sample

    async def run(self, seconds: float, every: float = 1.0) -> list[Sample]:
        taken = [self.take()]
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await asyncio.sleep(every)
            taken.append(self.take())
        return taken


def cpu_percent(samples: list[Sample]) -> float:
    if len(samples) < 2:
        return float("nan")
    return 100 * (samples[-1].cpu_s - samples[0].cpu_s) / (samples[-1].at - samples[0].at)


def _ip(i: int) -> str:
    return f"10.{32 + i // 65536}.{(i // 256) % 256}.{i % 256}"


def _service(i: int, udp: bool) -> dict[str, Any]:
    labels = {"app": f"app-{i}"}
    if udp:
        labels["bench.proxymedic.io/dns-like"] = "true"
    vip = f"10.96.{i // 250}.{i % 250 + 2}"
    return {
        "metadata": {"name": f"svc-{i:05d}", "namespace": f"ns-{i % 100:03d}", "labels": labels},
        "spec": {
            "clusterIP": vip,
            "clusterIPs": [vip],
            "ports": [{"name": "p", "protocol": "UDP" if udp else "TCP", "port": 53 if udp else 80}],
        },
    }


def _slice(i: int, udp: bool, ips: list[str]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"svc-{i:05d}-abcde",
            "namespace": f"ns-{i % 100:03d}",
            "labels": {"kubernetes.io/service-name": f"svc-{i:05d}"},
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [ip], "conditions": {"ready": True, "serving": True, "terminating": False}}
            for ip in ips
        ],
        "ports": [{"name": "p", "protocol": "UDP" if udp else "TCP", "port": 53 if udp else 80}],
    }


def _health(node: str, now: datetime) -> dict[str, Any]:
    stamp = now.isoformat().replace("+00:00", "Z")
    return {
        "metadata": {"name": node},
        "spec": {"nodeName": node},
        "status": {
            "observedAt": stamp,
            "agentVersion": "bench",
            "proxyMode": "ipvs",
            "kubeProxy": {"freshness": "Fresh", "healthz": "Healthy"},
            "virtualServers": [],
        },
    }


_TRACED = """
import os, signal, sys, tracemalloc
from pathlib import Path
dumps = iter(range(1000))
def dump(*_):
    path = Path(sys.argv[1]) / f"snapshot-{next(dumps)}.tracemalloc"
    tracemalloc.take_snapshot().dump(f"{path}.part")
    os.rename(f"{path}.part", path)
signal.signal(signal.SIGUSR1, dump)
from proxymedic.cli.main import main
sys.exit(main(sys.argv[2:]))
"""
"""The operator with tracemalloc on: SIGUSR1 dumps a snapshot into the directory given first."""


def _spawn(
    args: list[str],
    log: Path,
    module: str = "proxymedic.cli.main",
    traced: Path | None = None,
    *,
    wrapper: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``wrapper``: a command that ends by exec'ing the rest, so the process's pid stays the one
    sampled. ``env`` replaces this process's environment."""
    command = [sys.executable, "-m", module, *args]
    if traced is not None:
        frames = os.environ.get("BENCH_TRACEMALLOC_FRAMES", "1")  # more: slower, and the sync may not end
        command = [sys.executable, "-X", f"tracemalloc={frames}", "-c", _TRACED, str(traced), *args]
    with log.open("wb") as out:
        return subprocess.Popen(
            [*(wrapper or []), *command],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"},
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


async def operator_footprint(
    services: int = 10_000,
    endpoints_per_service: int = 10,
    udp_share: float = 0.1,
    nodes: int = 1_000,
    churn_per_second: float = 20.0,
    idle_seconds: float = 20.0,
    churn_seconds: float = 60.0,
    traced: Path | None = None,
) -> dict[str, Any]:
    """The operator's RSS and CPU: after its initial sync (idle), and while EndpointSlices churn.

    ``traced``: run the operator under tracemalloc and dump a snapshot into this directory at the
    end of the idle phase (``snapshot-0``) and of the churn (``snapshot-1``); the figures are then
    those of a traced process, heavier and slower than the real one.
    """
    workdir = Path(tempfile.mkdtemp(prefix="proxymedic-bench-"))
    rng = random.Random(7)
    emulator = KubernetesApiEmulator(keep_requests=False, history_size=20_000)
    async with serve(emulator):
        for info in KINDS:
            emulator.register_crd(build_crd(info))
        store, spec = emulator.store, emulator.spec
        udp = [i < services * udp_share for i in range(services)]
        pod = 0
        ips: dict[int, list[str]] = {}
        for i in range(services):
            store.create(spec("v1", "services"), f"ns-{i % 100:03d}", _service(i, udp[i]))
            ips[i] = [_ip(pod + k) for k in range(endpoints_per_service)]
            pod += endpoints_per_service
            store.create(
                spec("discovery.k8s.io/v1", "endpointslices"), f"ns-{i % 100:03d}", _slice(i, udp[i], ips[i])
            )
        now = datetime.now(UTC)
        for n in range(nodes):
            name = f"node-{n:05d}"
            store.create(spec("v1", "nodes"), None, {"metadata": {"name": name}})
            store.create(spec("proxymedic.io/v1alpha1", "nodeproxyhealths"), None, _health(name, now))
        policy = {
            "services": {"labelSelector": {"matchLabels": {"bench.proxymedic.io/dns-like": "true"}}},
            "actions": {
                "flushStaleConnections": {"enabled": True},
                "removeStaleRealServers": {"enabled": True},
            },
        }
        store.create(
            spec("proxymedic.io/v1alpha1", "proxyhealthpolicies"),
            None,
            {"metadata": {"name": "dns-like"}, "spec": policy},
        )
        url = str(emulator.url).rstrip("/")
        kubeconfig = write_kubeconfig(url, workdir / "kubeconfig")
        process = _spawn(
            [
                "operator",
                "--kubeconfig",
                str(kubeconfig),
                "--standalone",
                "--metrics-port",
                "0",
                "--liveness-endpoint",
                "",
            ],
            workdir / "operator.log",
            traced=traced,
        )
        sampler = Sampler(process.pid)
        started = time.monotonic()
        try:
            # The initial sync: wait until the policy's status shows the operator has seen it all.
            async with KubeClient(Connection(server=url, ssl_context=False)) as client:
                async with asyncio.timeout(300):
                    while True:
                        sampler.take()
                        policy_obj = store.get(
                            spec("proxymedic.io/v1alpha1", "proxyhealthpolicies"), None, "dns-like"
                        )
                        if (policy_obj.get("status") or {}).get("conditions"):
                            break
                        await asyncio.sleep(0.5)
                # Let Kopf finish processing the initial listing of every watched kind: until the
                # process uses less than a fifth of a core over 3 s (or 5 minutes have passed).
                window = [sampler.take()]
                while time.monotonic() - started < 300:
                    await asyncio.sleep(1)
                    window = [*window[-2:], sampler.take()]
                    if len(window) == 3 and cpu_percent(window) < 20:
                        break
                synced_after = time.monotonic() - started
                idle = await sampler.run(idle_seconds)
                await _snapshot(process, traced, 0)
                churn_task = asyncio.create_task(_churn(client, rng, ips, udp, churn_per_second, pod))
                heartbeat_task = asyncio.create_task(_heartbeats(client, nodes))
                churn = await sampler.run(churn_seconds)
                churn_task.cancel()
                heartbeat_task.cancel()
                await _snapshot(process, traced, 1)
                changes = 0
                for task in (churn_task, heartbeat_task):
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                changes = _churn_count[0]
                intents = len(store.select(spec("proxymedic.io/v1alpha1", "remediationintents"), _all()))
        finally:
            _stop(process)
    return {
        "services": services,
        "endpoints": services * endpoints_per_service,
        "udp_services_selected": sum(udp),
        "nodes": nodes,
        "synced_after": synced_after,
        "idle_rss_mb": idle[-1].rss_mb,
        "idle_cpu_percent": cpu_percent(idle),
        "churn_per_second": churn_per_second,
        "churn_changes": changes,
        "churn_seconds": churn_seconds,
        "churn_rss_mb_peak": max(s.rss_mb for s in churn),
        "churn_rss_mb_end": churn[-1].rss_mb,
        "churn_cpu_percent": cpu_percent(churn),
        "intents_created": intents,
        "rss_series": [(s.at - started, s.rss_mb) for s in sampler.samples],
    }


_churn_count = [0]


async def _snapshot(process: subprocess.Popen[bytes], traced: Path | None, number: int) -> None:
    """Have a traced operator dump its allocations, and wait until the dump is written."""
    if traced is None:
        return
    process.send_signal(signal.SIGUSR1)
    path = traced / f"snapshot-{number}.tracemalloc"
    async with asyncio.timeout(300):
        while not path.exists():  # noqa: ASYNC110 - another process renames it once written
            await asyncio.sleep(0.5)


def _all() -> Any:
    from proxymedic.emulator.selectors import Selection

    return Selection(namespace=None)


async def _churn(
    client: KubeClient,
    rng: random.Random,
    ips: dict[int, list[str]],
    udp: list[bool],
    rate: float,
    next_pod: int,
) -> None:
    """Replace one endpoint of a random Service at ``rate`` per second (a pod replaced)."""
    _churn_count[0] = 0
    interval = 1.0 / rate
    while True:
        i = rng.randrange(len(ips))
        k = rng.randrange(len(ips[i]))
        ips[i][k] = _ip(next_pod)
        next_pod += 1
        body = _slice(i, udp[i], ips[i])
        await client.patch(
            ENDPOINT_SLICES,
            body["metadata"]["name"],
            {"endpoints": body["endpoints"]},
            body["metadata"]["namespace"],
        )
        _churn_count[0] += 1
        await asyncio.sleep(interval)


async def _heartbeats(client: KubeClient, nodes: int) -> None:
    """The nodes' agents keep reporting (a heartbeat every 300 s per node)."""
    n = 0
    while True:
        await asyncio.sleep(300 / nodes)
        name = f"node-{n % nodes:05d}"
        now = datetime.now(UTC)
        await client.patch(NODE_HEALTHS, name, {"status": _health(name, now)["status"]}, subresource="status")
        n += 1


async def agent_footprint(seconds: float = 30.0) -> dict[str, Any]:
    """``proxymedic agent`` as in a pod (``pod``) and with a kubeconfig (``kernel``) on this
    machine's kernel, and the agent's code on the modelled dataplane (``modelled``); where its
    memory goes at start (``imports``, ``agent_import_profile``)."""
    workdir = Path(tempfile.mkdtemp(prefix="proxymedic-bench-"))
    results: dict[str, Any] = {}
    # Before the emulator starts, and with the control plane stopped before the other runs: the
    # machine runs nothing else of the benchmark's while a process is sampled.
    results["pod"] = await asyncio.to_thread(pod_agent_footprint, seconds, workdir)
    results["imports"] = await asyncio.to_thread(agent_import_profile)
    emulator = KubernetesApiEmulator(keep_requests=False)
    async with serve(emulator):
        for info in KINDS:
            emulator.register_crd(build_crd(info))
        emulator.store.create(emulator.spec("v1", "nodes"), None, {"metadata": {"name": "node-1"}})
        url = str(emulator.url).rstrip("/")
        kubeconfig = write_kubeconfig(url, workdir / "kubeconfig")
        runs = {
            "kernel": [
                "agent",
                "--node-name",
                "node-1",
                "--kubeconfig",
                str(kubeconfig),
                "--metrics-port",
                "0",
            ],
        }
        for label, args in runs.items():
            log = workdir / f"agent-{label}.log"
            process = _spawn(args, log, env={**os.environ, **_IMPORT_LOG})
            sampler = Sampler(process.pid)
            try:
                await asyncio.sleep(8)  # start-up: imports, first sensing round, first report
                samples = await sampler.run(seconds)
            finally:
                _stop(process)
            health = emulator.store.get(
                emulator.spec("proxymedic.io/v1alpha1", "nodeproxyhealths"), None, "node-1"
            )
            problems = (health.get("status") or {}).get("problems") or []
            results[label] = {
                "rss_mb": max(s.rss_mb for s in samples),
                "idle_cpu_percent": cpu_percent(samples),
                "seconds": seconds,
                "problems": problems,
                "kubernetes_imported": kubernetes_imported(log),
            }
        process = _spawn(
            ["--kubeconfig", str(kubeconfig), "--node-name", "node-2"],
            workdir / "agent-model.log",
            module="bench.agent_process",
        )
        sampler = Sampler(process.pid)
        try:
            await asyncio.sleep(8)
            samples = await sampler.run(seconds)
        finally:
            _stop(process)
        results["modelled"] = {
            "rss_mb": max(s.rss_mb for s in samples),
            "idle_cpu_percent": cpu_percent(samples),
            "seconds": seconds,
        }
    results["kubernetes_client_mb"] = await _kubernetes_client_share()
    return results


_IMPORT_LOG = {"PYTHONPROFILEIMPORTTIME": "1"}
"""Python prints every module it imports, the first time, to stderr (``-X importtime``): the
agents' logs then say whether the kubernetes client was ever imported. The cost is a line of
output per import, nothing kept in memory."""


def kubernetes_imported(log: Path) -> bool:
    """Whether the process that wrote ``log`` (run with ``_IMPORT_LOG``) imported the kubernetes
    client, at start or later."""
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("import time:"):
            module = line.rsplit("|", 1)[-1].strip()
            if module == "kubernetes" or module.startswith("kubernetes."):
                return True
    return False


POD_NAMESPACE = "proxymedic"
POD_NODE = "node-pod"
_SECRETS = "secrets/kubernetes.io/serviceaccount"
_AGENT_OBJECTS = {
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}
"""What the chart creates for the agent, less its DaemonSet (no controller here runs pods) and
its metrics Service."""

_UNSHARE = ["unshare", "--mount", "--propagation", "private"]
_MOUNT_SECRETS = (
    'mount -t tmpfs -o mode=0755,size=1m tmpfs "$1" && mkdir -p "$1/$2" && cp "$3/token" "$3/ca.crt" "$1/$2"'
    ' && shift 3 && exec "$@"'
)
"""Run in a mount namespace of its own: a fresh tmpfs over /run (where /var/run points), as a
container has its own, holding the service account's files where a pod finds them; then exec
the agent, which keeps the pid. The host's /run is not touched."""


class PodUnavailable(Exception):
    """This machine cannot run the agent in a pod's configuration; the message says why."""


def _pod_prerequisites() -> Binaries:
    """The Kubernetes binaries, once everything else the pod run needs is known to be here."""
    from tests.realk8s import binaries

    if os.geteuid() != 0:
        raise PodUnavailable("mounting the service account in a mount namespace needs root")
    if shutil.which("unshare") is None:
        raise PodUnavailable("no unshare on PATH (util-linux)")
    probe = subprocess.run([*_UNSHARE, "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        raise PodUnavailable(f"unshare --mount failed: {probe.stderr.strip()}")
    if shutil.which("kubectl") is None:
        raise PodUnavailable("no kubectl on PATH (it installs the chart's objects)")
    if importlib.util.find_spec("helm_python") is None:
        raise PodUnavailable("helm-python-sdk, which renders the chart, is not installed (the test group)")
    try:
        return binaries.find()
    except binaries.Missing as missing:
        raise PodUnavailable(str(missing)) from None


def pod_agent_footprint(seconds: float, workdir: Path) -> dict[str, Any]:
    """``proxymedic agent`` as a DaemonSet pod runs it, against a real kube-apiserver: the chart's
    CRDs, RBAC and admission policy installed, a token of the agent's service account bound to a
    Pod on the node, no ``--kubeconfig``, the in-cluster connection path
    (``kube.config.in_cluster_connection``). Blocking: run it in a thread.

    ``{"skipped": reason}`` where this machine lacks a piece (binaries, root, unshare)."""
    from tests.realk8s import controlplane

    try:
        found = _pod_prerequisites()
    except PodUnavailable as reason:
        return {"skipped": str(reason)}
    with controlplane.running(found, ready_timeout=180) as plane:
        token = _install_for_pod(plane)
        secrets = workdir / "serviceaccount"
        secrets.mkdir()
        (secrets / "token").write_text(token)
        shutil.copy(plane.ca_file, secrets / "ca.crt")
        api = urlsplit(plane.server)
        env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
        env |= {"KUBERNETES_SERVICE_HOST": str(api.hostname), "KUBERNETES_SERVICE_PORT": str(api.port)}
        run = str(Path("/var/run").resolve())
        log = workdir / "agent-pod.log"
        process = _spawn(
            ["agent", "--node-name", POD_NODE, "--metrics-port", "0"],
            log,
            wrapper=[*_UNSHARE, "sh", "-c", _MOUNT_SECRETS, "sh", run, _SECRETS, str(secrets)],
            env={**env, **_IMPORT_LOG},
        )
        try:
            started = time.monotonic()
            _wait_for_report(plane, process, log)
            reported_after = time.monotonic() - started
            if Path(f"/proc/{process.pid}/exe").resolve() != Path(sys.executable).resolve():
                raise RuntimeError(f"pid {process.pid} is not the agent's Python: the wrapper did not exec")
            samples = asyncio.run(Sampler(process.pid).run(seconds))
            status = _wait_for_report(plane, process, log)  # the last one, as the other runs read it
        finally:
            _stop(process)
    return {
        "rss_mb": max(s.rss_mb for s in samples),
        "idle_cpu_percent": cpu_percent(samples),
        "seconds": seconds,
        "problems": status.get("problems") or [],
        "kubernetes_imported": kubernetes_imported(log),
        "reported_after": reported_after,
    }


def _install_for_pod(plane: ControlPlane) -> str:
    """The chart's CRDs and the agent's objects, a Node and the agent's Pod on it; returns a token of
    the agent's service account bound to that Pod, which names the node, as the kubelet's does."""
    from tests.chart.render import chart_crds, render

    plane.apply(chart_crds())
    plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    objects = [
        obj
        for obj in render(namespace=POD_NAMESPACE).objects
        if obj["kind"] in _AGENT_OBJECTS
        and obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "agent"
    ]
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": POD_NAMESPACE}}
    plane.apply([namespace, *objects])
    account = next(obj["metadata"]["name"] for obj in objects if obj["kind"] == "ServiceAccount")
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": POD_NODE}}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{account}-{POD_NODE}", "namespace": POD_NAMESPACE},
        "spec": {
            "nodeName": POD_NODE,
            "serviceAccountName": account,
            "containers": [{"name": "agent", "image": "proxymedic:bench"}],
        },
    }
    _create(plane, "/api/v1/nodes", node)
    created = _create(plane, f"/api/v1/namespaces/{POD_NAMESPACE}/pods", pod)
    return plane.service_account_token(POD_NAMESPACE, account, pod=created)


def _create(plane: ControlPlane, path: str, body: dict[str, Any]) -> dict[str, Any]:
    code, created = plane.request("POST", path, body)
    if code != 201:
        raise RuntimeError(f"POST {path} failed ({code}): {created}")
    return dict(created)


def _wait_for_report(plane: ControlPlane, process: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    """The agent's first status on its NodeProxyHealth: the in-cluster path worked end to end (the
    service account read, the API server reached and trusted, the bound token admitted)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"the agent exited with {process.returncode} before reporting:\n{tail}")
        code, body = plane.request("GET", f"/apis/proxymedic.io/v1alpha1/nodeproxyhealths/{POD_NODE}")
        if code == 200 and body.get("status"):
            return dict(body["status"])
        time.sleep(0.5)
    raise RuntimeError(f"no NodeProxyHealth status from the agent within 120 s; its log: {log}")


_SHARE = """
import proxymedic.cli.main, proxymedic.agent.runner, proxymedic.agent.node, proxymedic.kube.config
from proxymedic.agent.node import kernel_dataplane
kernel_dataplane()
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
before = rss()
import kubernetes.client, kubernetes.config
print(rss() - before)
"""


async def _kubernetes_client_share() -> float:
    """What importing the kubernetes client adds to the agent's memory: only a kubeconfig needs it
    (``proxymedic agent --kubeconfig``); in a pod the service account is read without it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _SHARE, stdout=asyncio.subprocess.PIPE
    )
    output, _ = await process.communicate()
    return float(output.decode().strip())


_IMPORT_PROFILE = r"""
import runpy, sys
import _frozen_importlib as bootstrap

def rss_kb():
    with open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])

def own(name):
    return name == "proxymedic" or name.startswith("proxymedic.")

def group_of(name):
    top = name.partition(".")[0]
    if own(name):
        return ".".join(name.split(".")[:2])
    return "standard library" if top in sys.stdlib_module_names else top

def stand_in(name, module):
    # What needs a cluster: the service account's files, and the agent's work.
    if name == "proxymedic.kube.config":
        import ssl
        def in_cluster_connection():
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            return module.Connection(server="https://127.0.0.1:6443", token=lambda: "", ssl_context=context)
        module.in_cluster_connection = in_cluster_connection
    elif name == "proxymedic.agent.runner":
        async def run(self, stop):
            return None
        module.AgentRunner.run = run

started_kb = rss_kb()
groups = {}  # group -> [kB, modules]
frames = [["", "", 0]]  # the imports under way: [module, group, kB added by the imports made in it]
load = bootstrap._find_and_load

def measured_load(name, import_):
    parent = frames[-1]
    # A module ProxyMedic's code imports starts a group; what it imports in turn joins it.
    group = group_of(name) if own(name) or not parent[0] or own(parent[0]) else parent[1]
    before = rss_kb()
    frames.append([name, group, 0])
    try:
        module = load(name, import_)
    finally:
        nested = frames.pop()[2]
        added = rss_kb() - before
        parent[2] += added
        entry = groups.setdefault(group, [0, 0])
        entry[0] += added - nested
    entry[1] += 1
    stand_in(name, module)
    return module

# Every import of a module not loaded yet comes here: `import`, __import__, importlib.import_module.
bootstrap._find_and_load = measured_load
sys.argv = ["proxymedic", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("proxymedic.cli.main", run_name="__main__", alter_sys=True)
except SystemExit as exit:
    code = exit.code
bootstrap._find_and_load = load
total_kb = rss_kb()
import json
result = {"exit_code": code, "python_kb": started_kb, "total_kb": total_kb, "imports_kb": frames[0][2]}
print(json.dumps(result | {"groups": groups}))
"""
"""``python -m proxymedic.cli.main ARGS`` under an import hook that records the RSS each import
added, less that of the imports it made in turn (see ``agent_import_profile``)."""

AGENT_ARGS = ["agent", "--node-name", "profile", "--metrics-port", "0"]
"""As the pod run's agent, whose metrics server is off as well."""


def agent_import_profile() -> dict[str, Any]:
    """Where the agent's memory goes at start: ``proxymedic agent`` in a pod's configuration, in a
    fresh process, up to its first API call, and the RSS (VmRSS) its imports added, by group.

    A group is a package ProxyMedic's code imports (the standard library counts as one) with
    whatever that import brought in that was not loaded yet; ProxyMedic's modules are grouped by
    subpackage. So a dependency shared by two packages counts where it was first imported: in
    the agent's order, which this process keeps. Memory an import touched counts for it, pages it
    freed and the allocator kept included. ``outside_imports_mb`` is the rest of the start-up
    (the parser, the settings, the metrics, the adapters, an event loop).

    Stood in for, as needing a cluster: the service account's files (the connection is made
    without them) and ``AgentRunner.run`` (it returns before any API call, so modules imported
    later, by a sensing round or a watch, are not here). ProxyMedic's modules are read from
    bytecode, as from the image's installed wheel: a first run writes it under a temporary
    ``PYTHONPYCACHEPREFIX``, the second is measured."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("KUBECONFIG", "PYTHONDONTWRITEBYTECODE")
    }
    env |= {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"}
    with tempfile.TemporaryDirectory(prefix="proxymedic-pycache-") as cache:
        env["PYTHONPYCACHEPREFIX"] = cache
        for _ in range(2):
            done = subprocess.run(
                [sys.executable, "-c", _IMPORT_PROFILE, *AGENT_ARGS],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            raw = json.loads(done.stdout.splitlines()[-1]) if done.returncode == 0 else {}
            if raw.get("exit_code") != 0:
                raise RuntimeError(f"the agent's start failed ({done.returncode}): {done.stderr[-2000:]}")
    groups = [
        {"name": name, "mb": kb / 1024, "modules": count}
        for name, (kb, count) in sorted(raw["groups"].items(), key=lambda item: -item[1][0])
    ]
    return {
        "command": " ".join(["proxymedic", *AGENT_ARGS]),
        "python_mb": raw["python_kb"] / 1024,
        "imports_mb": raw["imports_kb"] / 1024,
        "outside_imports_mb": (raw["total_kb"] - raw["python_kb"] - raw["imports_kb"]) / 1024,
        "total_mb": raw["total_kb"] / 1024,
        "groups": groups,
    }


__all__ = [
    "agent_footprint",
    "agent_import_profile",
    "operator_footprint",
    "pod_agent_footprint",
    "timedelta",
]


def cluster_state(services: int = 10_000, endpoints_per_service: int = 10, nodes: int = 1_000) -> list[str]:
    """What the operator's Cluster holds for the benchmark's objects, without Kopf or a process:
    tracemalloc's total and top allocation sites (file:line) after feeding it every object."""
    import gc
    import tracemalloc

    from proxymedic.operator.state import Cluster

    tracemalloc.start()
    gc.collect()
    base = tracemalloc.get_traced_memory()[0]
    cluster, now, pod = Cluster(), datetime.now(UTC), 0
    for n in range(nodes):
        cluster.set_node({"metadata": {"name": f"node-{n:05d}", "uid": f"uid-node-{n}"}}, deleted=False)
    for i in range(services):
        udp = i < services * 0.1
        service = _service(i, udp)
        service["metadata"]["uid"] = f"{i:08d}-aaaa-bbbb-cccc-000000000000"
        cluster.set_service(service, deleted=False)
        slice_ = _slice(i, udp, [_ip(pod + k) for k in range(endpoints_per_service)])
        slice_["metadata"] |= {"uid": f"{i:08d}-dddd-bbbb-cccc-000000000000", "generation": 1}
        cluster.set_slice(slice_, deleted=False, now=now)
        pod += endpoints_per_service
    for n in range(nodes):
        cluster.set_health(f"node-{n:05d}", _health(f"node-{n:05d}", now), now)
    gc.collect()
    total = tracemalloc.get_traced_memory()[0] - base
    stats = tracemalloc.take_snapshot().statistics("lineno")
    tracemalloc.stop()
    endpoints = services * endpoints_per_service
    lines = [f"Cluster: {total / 2**20:.1f} MiB ({services} Services, {endpoints} endpoints)"]
    root = str(Path(__file__).resolve().parent.parent) + "/"
    for stat in stats[:25]:
        frame = stat.traceback[0]
        where = f"{frame.filename.removeprefix(root)}:{frame.lineno}"
        lines.append(f"{stat.size / 2**20:8.2f} MiB {stat.count:8d}  {where}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.footprint operator``: the operator's footprint alone (or the agent's),
    printed as JSON without the RSS series; ``cluster-state``: the operator's Cluster alone,
    under tracemalloc, and ``agent-imports``: where the agent's memory goes at start (seconds,
    not minutes)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.footprint")
    parser.add_argument("which", choices=("operator", "agent", "agent-imports", "cluster-state"))
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=1_000)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--churn-seconds", type=float, default=60.0)
    parser.add_argument(
        "--tracemalloc",
        type=Path,
        metavar="DIR",
        help="run the operator under tracemalloc; snapshots after the idle phase and the churn go to DIR",
    )
    args = parser.parse_args(argv)
    if args.which == "cluster-state":
        print("\n".join(cluster_state(args.services, nodes=args.nodes)))
        return 0
    if args.which == "agent-imports":
        result = agent_import_profile()
    elif args.which == "agent":
        result = asyncio.run(agent_footprint())
    else:
        result = asyncio.run(
            operator_footprint(
                services=args.services,
                nodes=args.nodes,
                idle_seconds=args.idle_seconds,
                churn_seconds=args.churn_seconds,
                traced=args.tracemalloc,
            )
        )
        result.pop("rss_series")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
