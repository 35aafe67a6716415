"""A real kube-proxy for node-1, and what a kubelet and a DaemonSet would do for it.

There is no kubelet: ``KubeProxyDaemon`` creates the kube-proxy Pod object, asks for a token
bound to it (as the kubelet's projected token is), writes its kubeconfig and runs the
kube-proxy binary. When the Pod object is deleted (ProxyMedic's restart), it stops the process,
force-deletes the terminating Pod object and starts the next generation, as the DaemonSet would.
kube-proxy talks to the API server through a ``Relay``, so a test can blackhole its connection
while its healthz keeps answering.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.realk8s.controlplane import ControlPlane

NODE = "node-1"
NAMESPACE = "kube-system"
CLUSTER_CIDR = "10.244.0.0/16"


class Relay:
    """A TCP relay from a loopback port to the API server; ``blackhole`` swallows every byte
    both ways from then on, keeping the connections open, as a dead network path does."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.blackholed = threading.Event()
        self._closed = False
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, name="relay", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                continue
            server.settimeout(None)
            self._socks += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if not self.blackholed.is_set():
                    dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        for sock in self._socks:
            sock.close()


def healthz() -> int | None:
    """HTTP status of kube-proxy's /healthz on the node, or None when nothing answers."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:10256/healthz", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return None


def setup_rbac(plane: ControlPlane) -> None:
    """kube-proxy's ServiceAccount bound to the built-in system:node-proxier ClusterRole."""
    plane.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "kube-proxy", "namespace": NAMESPACE},
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "kube-proxy"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "system:node-proxier",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "kube-proxy", "namespace": NAMESPACE}],
            },
        ]
    )


@dataclass
class KubeProxyDaemon:
    plane: ControlPlane
    binary: Path
    workdir: Path
    logs: Path
    relay: Relay
    generation: int = 0
    restarts: list[float] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    pod: dict[str, Any] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        setup_rbac(self.plane)
        self._run_generation()
        self._thread = threading.Thread(target=self._watch, name="kube-proxy-daemon", daemon=True)
        self._thread.start()

    def _run_generation(self) -> None:
        self.generation += 1
        name = f"kube-proxy-{self.generation:05x}"
        status, pod = self.plane.request(
            "POST",
            f"/api/v1/namespaces/{NAMESPACE}/pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"k8s-app": "kube-proxy"}},
                "spec": {
                    "nodeName": NODE,
                    "hostNetwork": True,
                    "serviceAccountName": "kube-proxy",
                    "containers": [{"name": "kube-proxy", "image": "registry.k8s.io/kube-proxy:v1.36.1"}],
                },
            },
        )
        assert status == 201, f"cannot create the kube-proxy pod: {pod}"
        self.pod = pod
        token = self.plane.service_account_token(NAMESPACE, "kube-proxy", pod=pod)
        kubeconfig = self.plane.write_kubeconfig(self.workdir / "kube-proxy.kubeconfig", token, "kube-proxy")
        config = kubeconfig.read_text().replace(self.plane.server, f"https://127.0.0.1:{self.relay.port}")
        kubeconfig.write_text(config)
        log = (self.logs / "kube-proxy.log").open("ab")
        self.proc = subprocess.Popen(
            [
                str(self.binary),
                f"--kubeconfig={kubeconfig}",
                f"--hostname-override={NODE}",
                "--bind-address=127.0.0.1",  # the node has no address of its own but loopback
                "--proxy-mode=ipvs",
                "--ipvs-scheduler=rr",
                f"--cluster-cidr={CLUSTER_CIDR}",
                "--metrics-bind-address=127.0.0.1:10249",
                "--healthz-bind-address=127.0.0.1:10256",
                "--conntrack-max-per-core=0",
                "--v=2",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def _stop_process(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _watch(self) -> None:
        """The kubelet and the DaemonSet: a kube-proxy Pod being deleted is replaced."""
        while not self._stop.wait(2.0):
            name = self.pod["metadata"]["name"]
            try:
                status, pod = self.plane.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods/{name}")
            except OSError:
                continue
            deleted = status == 404 or (status == 200 and pod["metadata"].get("deletionTimestamp"))
            if not deleted:  # alive, or the API server busy (5xx, 429): ask again
                continue
            self._stop_process()
            if status == 200:
                self.plane.request(
                    "DELETE",
                    f"/api/v1/namespaces/{NAMESPACE}/pods/{name}",
                    {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0},
                )
            self.restarts.append(time.time())
            self._run_generation()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._stop_process()
