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
import os
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
IMAGE = "registry.k8s.io/kube-proxy:v1.36.1"


class Relay:
    """A TCP relay from a local port (on loopback unless ``listen`` names another of the node's
    addresses) to the API server. ``blackhole`` makes the connections open at that moment
    swallow every byte both ways while staying open, as a dead network path does; connections
    made afterwards (a restarted kube-proxy's) pass."""

    def __init__(self, upstream: tuple[str, int], listen: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self.listener = socket.create_server((listen, 0))
        self.port = int(self.listener.getsockname()[1])
        self._closed = False
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket, threading.Event]] = []
        threading.Thread(target=self._accept, name="relay", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:  # the API server is gone (stopping): the client sees its connection close
                client.close()
                continue
            server.settimeout(None)
            dead = threading.Event()
            pair = (client, server, dead)
            with self._lock:
                self._pairs.append(pair)
            pumping = [2]  # directions still open; the last to end closes the connection
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b, dead, pumping, pair), daemon=True).start()

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        dead: threading.Event,
        pumping: list[int],
        pair: tuple[socket.socket, socket.socket, threading.Event],
    ) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if not dead.is_set():
                    dst.sendall(data)
        if not dead.is_set():
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
        with self._lock:
            pumping[0] -= 1
            over = pumping[0] == 0
            if over and pair in self._pairs:
                self._pairs.remove(pair)
        if over:  # both directions ended: the connection is over, its sockets closed here
            for sock in pair[:2]:
                sock.close()

    def blackhole(self) -> int:
        """Kill the path of every connection open now; returns how many there were."""
        with self._lock:
            for _, _, dead in self._pairs:
                dead.set()
            return len(self._pairs)

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        with self._lock:
            for client, server, _ in self._pairs:
                client.close()
                server.close()


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; nothing if it is not running."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def healthz() -> int | None:
    """HTTP status of kube-proxy's /healthz on the node, or None when nothing answers."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:10256/healthz", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return None


def relayed_kubeconfig(
    plane: ControlPlane, relay: Relay, address: str, path: Path, token: str | None = None
) -> Path:
    """kube-proxy's kubeconfig, with its ServiceAccount's token (or ``token``'s): through the relay
    listening on ``address`` (a network namespace's gateway), and the API server's certificate
    checked for the name it has (127.0.0.1)."""
    if token is None:
        token = plane.service_account_token(NAMESPACE, "kube-proxy")
    plane.write_kubeconfig(path, token, "kube-proxy")
    text = path.read_text().replace(plane.server, f"https://{address}:{relay.port}")
    text = text.replace("certificate-authority:", "tls-server-name: 127.0.0.1\n    certificate-authority:")
    path.write_text(text)
    return path


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
    mode: str = "ipvs"
    node_ns: str | None = None
    """The node's network namespace, where kube-proxy runs; None: this one (the VM)."""
    relay_address: str = "127.0.0.1"
    """Where kube-proxy reaches the relay from the node."""
    generation: int = 0
    restarts: list[float] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    pod: dict[str, Any] = field(default_factory=dict)
    daemonset: dict[str, Any] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        setup_rbac(self.plane)
        self.daemonset = self._daemonset()
        self._run_generation()
        self._thread = threading.Thread(target=self._watch, name="kube-proxy-daemon", daemon=True)
        self._thread.start()

    def _daemonset(self) -> dict[str, Any]:
        """kube-proxy's DaemonSet, as kubeadm creates it: ProxyMedic restarts only a kube-proxy pod
        a DaemonSet owns (its controller brings it back), so each generation's pod names it."""
        labels = {"k8s-app": "kube-proxy"}
        status, body = self.plane.request(
            "POST",
            f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets",
            {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": {"name": "kube-proxy", "namespace": NAMESPACE, "labels": labels},
                "spec": {
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "hostNetwork": True,
                            "serviceAccountName": "kube-proxy",
                            "containers": [{"name": "kube-proxy", "image": IMAGE}],
                        },
                    },
                },
            },
        )
        assert status == 201, f"cannot create kube-proxy's DaemonSet: {body}"
        return dict(body)

    def _run_generation(self) -> None:
        self.generation += 1
        name = f"kube-proxy-{self.generation:05x}"
        status, pod = self.plane.request(
            "POST",
            f"/api/v1/namespaces/{NAMESPACE}/pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": NAMESPACE,
                    "labels": {"k8s-app": "kube-proxy"},
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "DaemonSet",
                            "name": "kube-proxy",
                            "uid": self.daemonset["metadata"]["uid"],
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "spec": {
                    "nodeName": NODE,
                    "hostNetwork": True,
                    "serviceAccountName": "kube-proxy",
                    "containers": [{"name": "kube-proxy", "image": IMAGE}],
                },
            },
        )
        assert status == 201, f"cannot create the kube-proxy pod: {pod}"
        self.pod = pod
        token = self.plane.service_account_token(NAMESPACE, "kube-proxy", pod=pod)
        path = self.workdir / "kube-proxy.kubeconfig"
        kubeconfig = relayed_kubeconfig(self.plane, self.relay, self.relay_address, path, token)
        log = (self.logs / f"kube-proxy-{self.mode}.log").open("ab")
        where = ["ip", "netns", "exec", self.node_ns] if self.node_ns else []
        scheduler = ["--ipvs-scheduler=rr"] if self.mode == "ipvs" else []
        self.proc = subprocess.Popen(
            [
                *where,
                str(self.binary),
                f"--kubeconfig={kubeconfig}",
                f"--hostname-override={NODE}",
                "--bind-address=127.0.0.1",  # the VM's node has no address of its own but loopback
                f"--proxy-mode={self.mode}",
                *scheduler,
                f"--cluster-cidr={CLUSTER_CIDR}",
                "--metrics-bind-address=127.0.0.1:10249",
                "--healthz-bind-address=127.0.0.1:10256",
                "--conntrack-max-per-core=0",
                "--v=4",  # v=4 logs each sync and its duration
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            # client-go's HTTP/2 health check would notice a blackholed connection within 45 s
            # and reconnect; off, the watches stay on the dead path, as they do behind a
            # middlebox that answers the pings, or with a client that has no such check.
            env={**os.environ, "HTTP2_READ_IDLE_TIMEOUT_SECONDS": "0"},
        )
        log.close()

    def _stop_process(self) -> None:
        stop_process(self.proc)

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

    def restart(self, timeout: float = 120.0) -> None:
        """Delete the kube-proxy Pod object, as an administrator would; returns once the stand-in
        kubelet has started the next generation."""
        generation = self.generation
        name = self.pod["metadata"]["name"]
        status, body = self.plane.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods/{name}")
        assert status in (200, 202), f"cannot delete {name}: {body}"
        deadline = time.monotonic() + timeout
        while self.generation == generation:
            assert time.monotonic() < deadline, f"kube-proxy was not restarted within {timeout:.0f} s"
            time.sleep(0.5)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._stop_process()
