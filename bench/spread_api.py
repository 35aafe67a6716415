"""The API server of the spread harness (``bench.spread``), in a process of its own: the emulator, or
the real kube-apiserver with etcd on this machine.

With the real one, ProxyMedic runs as a user installs it: the chart installed with the real Helm
engine, the operator with its ServiceAccount's token, each agent with a token bound to an agent
Pod object on its node (so RBAC, the ValidatingAdmissionPolicy's node check on every report, and
API Priority and Fairness for service accounts all apply, as on a cluster). Write requests are
counted from the API server's audit log. The emulator stays for quick runs: it is one Python
event loop, whose cost per request the real server does not have.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from bench.measured import Write
from proxymedic.emulator.connection import write_kubeconfig
from proxymedic.kube.client import Connection
from proxymedic.sim.coredns import DNS_NAMESPACE, DnsPods, dns_service, kube_proxy_pod

WRITE_VERBS = {"create": "POST", "update": "PUT", "patch": "PATCH", "delete": "DELETE"}
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    verbs: ["create", "update", "patch", "delete"]
  - level: None
"""
RELEASE = NAMESPACE = "proxymedic"
SETUP_CONCURRENCY = 64


class ApiServer(Protocol):
    """What the harness needs of its API server."""

    url: str
    ca_file: str | None
    """The CA that signed the server's certificate; None: plain HTTP."""

    async def start(self, setup: dict[str, Any]) -> None: ...
    async def stop(self) -> None: ...

    def connection(self, token: str | None = None) -> Connection: ...
    def operator_kubeconfig(self) -> Path: ...
    def agent_tokens(self) -> dict[str, str]: ...
    def pids(self) -> list[int]: ...
    def writes(self) -> list[Write]: ...


def setup_document(settings: Any) -> dict[str, Any]:
    return {
        "nodes": [spec.name for spec in settings.nodes],
        "backends": list(settings.backends),
        "policy_spec": settings.policy_spec,
        "history_size": settings.history_size,
    }


def cluster_objects(setup: dict[str, Any]) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(API path of the collection, namespace, object) of everything the cluster holds at the start."""
    objects: list[tuple[str, str | None, dict[str, Any]]] = []
    for name in setup["nodes"]:
        labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}
        objects.append(("/api/v1/nodes", None, node))
        objects.append(("/api/v1/namespaces/kube-system/pods", "kube-system", kube_proxy_pod(name)))
    objects.append((f"/api/v1/namespaces/{DNS_NAMESPACE}/services", DNS_NAMESPACE, dns_service()))
    pods = DnsPods(dict.fromkeys(setup["backends"], "ready"))
    slices = f"/apis/discovery.k8s.io/v1/namespaces/{DNS_NAMESPACE}/endpointslices"
    objects.append((slices, DNS_NAMESPACE, pods.endpoint_slice()))
    policy = {
        "apiVersion": "proxymedic.io/v1alpha1",
        "kind": "ProxyHealthPolicy",
        "metadata": {"name": "coredns"},
        "spec": setup["policy_spec"],
    }
    objects.append(("/apis/proxymedic.io/v1alpha1/proxyhealthpolicies", None, policy))
    return objects


class EmulatorServer:
    """``python -m bench.spread apiserver``: the emulator seeded straight into its store."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.url = ""
        self.ca_file: str | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._writes: list[Write] = []

    async def start(self, setup: dict[str, Any]) -> None:
        (self.workdir / "setup.json").write_text(json.dumps(setup))
        url_file = self.workdir / "url"
        with (self.workdir / "apiserver.log").open("wb") as log:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.spread",
                "apiserver",
                "--setup",
                str(self.workdir / "setup.json"),
                "--url-file",
                str(url_file),
                "--writes-file",
                str(self.workdir / "writes.json"),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        async with asyncio.timeout(120):
            while not url_file.exists() or not url_file.read_text():
                if self._process.returncode is not None:
                    raise RuntimeError(f"the API server process exited: see {self.workdir / 'apiserver.log'}")
                await asyncio.sleep(0.1)
        self.url = url_file.read_text()

    def connection(self, token: str | None = None) -> Connection:
        return Connection(server=self.url, ssl_context=False)

    def operator_kubeconfig(self) -> Path:
        return write_kubeconfig(self.url, self.workdir / "operator.kubeconfig")

    def agent_tokens(self) -> dict[str, str]:
        return {}

    def pids(self) -> list[int]:
        return [self._process.pid] if self._process is not None else []

    def writes(self) -> list[Write]:
        return self._writes

    async def stop(self) -> None:
        if self._process is not None:
            await end_process(self._process)
            self._process = None
            writes = self.workdir / "writes.json"
            if writes.exists():
                self._writes = [tuple(w) for w in json.loads(writes.read_text())]


class RealServer:
    """kube-apiserver and etcd on this machine, with ProxyMedic's chart installed."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.url = ""
        self.ca_file: str | None = None
        self._stack = contextlib.ExitStack()
        self._plane: Any = None
        self._tokens: dict[str, str] = {}
        self._operator_token = ""
        self._ssl: ssl.SSLContext | None = None

    async def start(self, setup: dict[str, Any]) -> None:
        from tests.realk8s.binaries import find
        from tests.realk8s.controlplane import running

        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(AUDIT_POLICY)
        extra = (
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.workdir / 'audit.log'}",
            "--audit-log-maxsize=0",
            # As on a cluster: service accounts' requests are queued by priority level, not refused.
            "--enable-priority-and-fairness=true",
        )
        binaries = find()
        self._plane = await asyncio.to_thread(
            self._stack.enter_context,
            running(binaries, workdir=self.workdir / "k8s", extra_args=extra),
        )
        self.url = self._plane.server
        self.ca_file = str(self._plane.ca_file)
        self._ssl = self._plane.ssl_context()
        await asyncio.to_thread(self._install_chart)
        async with aiohttp.ClientSession() as session:
            post = _poster(session, self.url, self._plane.admin_token, self._ssl)
            # No controller-manager creates the namespace's default ServiceAccount, which pods need.
            account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}
            await post("/api/v1/namespaces/kube-system/serviceaccounts", account)
            await _all(post, [(path, body) for path, _, body in cluster_objects(setup)])
            await self._identities(post, setup["nodes"])

    def _install_chart(self) -> None:
        import helm_python as helm

        chart = Path(__file__).resolve().parents[1] / "charts" / "proxymedic"
        values = {"policy": {"coredns": {"enabled": False}}}
        config = helm.Config(kubeconfig_path=self._plane.kubeconfig, namespace=NAMESPACE)
        with config:
            config.install(chart, RELEASE, values, namespace=NAMESPACE, create_namespace=True, timeout=300)

    async def _identities(self, post: Post, nodes: list[str]) -> None:
        """The operator's token, and per node an agent Pod and a token bound to it (its node claim)."""
        apps = f"/apis/apps/v1/namespaces/{NAMESPACE}"
        daemonset = await asyncio.to_thread(self._one, f"{apps}/daemonsets", "agent")
        deployment = await asyncio.to_thread(self._one, f"{apps}/deployments", "operator")
        template = daemonset["spec"]["template"]
        operator_account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        agent_account = template["spec"]["serviceAccountName"]
        accounts = f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts"
        self._operator_token = (await post(f"{accounts}/{operator_account}/token", _token_request(None)))[
            "status"
        ]["token"]
        pods = await _all(
            post,
            [
                (
                    f"/api/v1/namespaces/{NAMESPACE}/pods",
                    {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {
                            "name": f"proxymedic-agent-{node}",
                            "labels": template["metadata"]["labels"],
                        },
                        "spec": {**template["spec"], "nodeName": node},
                    },
                )
                for node in nodes
            ],
        )
        tokens = await _all(
            post, [(f"{accounts}/{agent_account}/token", _token_request(pod)) for pod in pods]
        )
        self._tokens = {
            pod["spec"]["nodeName"]: t["status"]["token"] for pod, t in zip(pods, tokens, strict=True)
        }

    def _one(self, path: str, component: str) -> dict[str, Any]:
        status, body = self._plane.request(
            "GET", f"{path}?labelSelector=app.kubernetes.io/component={component}"
        )
        if status != 200 or len(body["items"]) != 1:
            raise RuntimeError(f"expected one {component} at {path}: {status} {body}")
        return dict(body["items"][0])

    def connection(self, token: str | None = None) -> Connection:
        assert self._ssl is not None, "not started"
        return Connection(server=self.url, token=token or self._plane.admin_token, ssl_context=self._ssl)

    def operator_kubeconfig(self) -> Path:
        path: Path = self._plane.write_kubeconfig(
            self.workdir / "operator.kubeconfig", self._operator_token, "operator"
        )
        return path

    def agent_tokens(self) -> dict[str, str]:
        return self._tokens

    def pids(self) -> list[int]:
        return [process.pid for process in self._plane.processes] if self._plane is not None else []

    def writes(self) -> list[Write]:
        return audit_writes(self.workdir / "audit.log")

    async def stop(self) -> None:
        await asyncio.to_thread(self._stack.close)


Post = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def _poster(session: aiohttp.ClientSession, url: str, token: str, context: ssl.SSLContext) -> Post:
    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        for attempt in range(10):
            async with session.post(url + path, json=body, headers=headers, ssl=context) as response:
                payload: dict[str, Any] = await response.json(content_type=None)
                if response.status == 429 and attempt < 9:  # priority and fairness: wait and retry
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                    continue
                if response.status >= 300:
                    raise RuntimeError(f"POST {path}: {response.status} {payload}")
                return payload
        raise AssertionError("unreachable")

    return post


async def _all(post: Post, requests: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every request, ``SETUP_CONCURRENCY`` at a time, the results in order."""
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def one(path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with gate:
            return await post(path, body)

    return list(await asyncio.gather(*(one(path, body) for path, body in requests)))


def _token_request(pod: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"audiences": [], "expirationSeconds": 86400}
    if pod is not None:
        meta = pod["metadata"]
        spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", "name": meta["name"], "uid": meta["uid"]}
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}


def audit_writes(path: Path) -> list[Write]:
    """Every write request the audit log recorded: (time received, method, resource, subresource, name)."""
    writes: list[Write] = []
    if not path.exists():
        return writes
    with path.open() as lines:
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            method = WRITE_VERBS.get(event.get("verb", ""))
            if method is None:
                continue
            ref = event.get("objectRef") or {}
            at = datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp()
            writes.append(
                (at, method, ref.get("resource", ""), ref.get("subresource", ""), ref.get("name", ""))
            )
    return sorted(writes)


async def end_process(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            async with asyncio.timeout(30):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


__all__ = ["ApiServer", "EmulatorServer", "RealServer", "audit_writes", "cluster_objects", "end_process"]
