"""A real Kubernetes control plane from binaries: etcd and kube-apiserver, as envtest runs them.

No kubelet, no controller-manager, no scheduler: what the API server itself validates (CRD
schemas and their CEL rules, defaults, RBAC, admission including ValidatingAdmissionPolicy,
service-account tokens) is real; what controllers would do (EndpointSlices, DaemonSet pods)
the tests do themselves. Used on the host (seconds to start) and inside the test VM.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.realk8s.binaries import Binaries

ADMIN_TOKEN_USER = "proxymedic-test-admin"
SERVICE_CIDRS = "10.96.0.0/16,fd00:10:96::/112"


class StartError(RuntimeError):
    """etcd or kube-apiserver did not become ready; the message ends with its log's tail."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _decode(raw: bytes) -> Any:
    """JSON where the server sent JSON (the API), text where it did not (/readyz)."""
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return raw.decode(errors="replace")


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class ControlPlane:
    """A running etcd + kube-apiserver; ``kubectl`` and ``request`` act as cluster admin."""

    workdir: Path
    server: str
    admin_token: str
    ca_file: Path
    kubeconfig: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def attach(cls, described: Path, workdir: Path) -> ControlPlane:
        """A control plane running elsewhere (``tests.realk8s.serve``), from the file it wrote.

        Nothing is started or stopped here: ``stop`` has no process to end.
        """
        info = json.loads(described.read_text())
        workdir.mkdir(parents=True, exist_ok=True)
        ca_file = workdir / "apiserver.crt"
        ca_file.write_text(info["ca"])
        plane = cls(
            workdir=workdir,
            server=str(info["server"]),
            admin_token=str(info["adminToken"]),
            ca_file=ca_file,
            kubeconfig=workdir / "admin.kubeconfig",
        )
        plane.write_kubeconfig(plane.kubeconfig, plane.admin_token, "admin")
        return plane

    def describe(self, server: str | None = None) -> dict[str, str]:
        """What ``attach`` needs, with ``server`` as the clients will reach it."""
        return {
            "server": server or self.server,
            "adminToken": self.admin_token,
            "ca": self.ca_file.read_text(),
        }

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def request(
        self, method: str, path: str, body: Any = None, *, token: str | None = None, content_type: str = ""
    ) -> tuple[int, Any]:
        """One API call; returns (status, decoded JSON body). Never raises on an HTTP error."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token or self.admin_token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type or "application/json")
        try:
            with urllib.request.urlopen(req, context=self.ssl_context(), timeout=60) as resp:
                return resp.status, _decode(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, _decode(err.read())

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, kubeconfig: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            raise FileNotFoundError("kubectl is not on PATH")
        result = subprocess.run(
            [kubectl, "--kubeconfig", str(kubeconfig or self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result

    def apply(self, objects: Sequence[dict[str, Any]], *extra: str) -> subprocess.CompletedProcess[str]:
        """Server-side apply, as a user would; raises with kubectl's message on rejection."""
        text = yaml.safe_dump_all(list(objects))
        return self.kubectl(
            "apply", "--server-side", "--field-manager=proxymedic-tests", *extra, "-f", "-", stdin=text
        )

    def write_kubeconfig(self, path: Path, token: str, user: str = "user") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "real",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "real", "context": {"cluster": "real", "user": user}}],
            "current-context": "real",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def service_account_token(
        self, namespace: str, name: str, *, pod: dict[str, Any] | None = None, seconds: int = 3600
    ) -> str:
        """A TokenRequest token for the ServiceAccount, bound to ``pod`` when given (its node claim)."""
        spec: dict[str, Any] = {"audiences": [], "expirationSeconds": seconds}
        if pod is not None:
            spec["boundObjectRef"] = {
                "kind": "Pod",
                "apiVersion": "v1",
                "name": pod["metadata"]["name"],
                "uid": pod["metadata"]["uid"],
            }
        status, body = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        if status != 201:
            raise AssertionError(f"TokenRequest for {namespace}/{name} failed ({status}): {body}")
        return str(body["status"]["token"])

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.processes):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes.clear()


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _wait_ready(plane: ControlPlane, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Poll /readyz until it answers 200; the API server's own readiness, not a sleep."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartError(f"kube-apiserver exited with {proc.returncode}:\n{_tail(log)}")
        if plane.ca_file.exists():
            try:
                status, body = plane.request("GET", "/readyz")
            except (OSError, ssl.SSLError) as err:
                last = str(err)
            else:
                if status == 200:
                    return
                last = f"{status} {body}"
        time.sleep(0.5)
    raise StartError(f"kube-apiserver not ready after {timeout:.0f} s ({last}):\n{_tail(log)}")


@contextmanager
def running(
    binaries: Binaries,
    *,
    workdir: Path | None = None,
    ready_timeout: float = 300.0,
    extra_args: Sequence[str] = (),
    restarts: int = 0,
    advertise_address: str = "127.0.0.1",
) -> Iterator[ControlPlane]:
    """Start etcd and kube-apiserver on free loopback ports; stop both and remove their data on exit.

    ``extra_args`` go to kube-apiserver. ``restarts``: how often to start kube-apiserver again
    when it exits before it is ready. On an emulated CPU a post-start hook can run out of its
    fixed time (rbac/bootstrap-roles allows 30 s) and end the process; the next start resumes
    from what etcd already holds. ``advertise_address``: the address the ``kubernetes`` Service's
    endpoint names, also written into the serving certificate (beside 127.0.0.1, which it is
    always valid for): the address at which clients elsewhere (a VM) reach this server.
    """
    own_dir = workdir is None
    work = Path(tempfile.mkdtemp(prefix="proxymedic-k8s-")) if workdir is None else workdir
    work.mkdir(parents=True, exist_ok=True)
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    _openssl("genrsa", "-out", str(work / "sa.key"), "2048")
    _openssl("rsa", "-in", str(work / "sa.key"), "-pubout", "-out", str(work / "sa.pub"))
    admin_token = os.urandom(16).hex()
    (work / "tokens.csv").write_text(
        f'{admin_token},{ADMIN_TOKEN_USER},{ADMIN_TOKEN_USER},"system:masters"\n'
    )
    certs = work / "certs"
    plane = ControlPlane(
        workdir=work,
        server=f"https://127.0.0.1:{api_port}",
        admin_token=admin_token,
        ca_file=certs / "apiserver.crt",
        kubeconfig=work / "admin.kubeconfig",
    )
    etcd_log, api_log = work / "etcd.log", work / "kube-apiserver.log"
    try:
        with etcd_log.open("wb") as out:
            plane.processes.append(
                subprocess.Popen(
                    [
                        str(binaries.etcd),
                        f"--data-dir={work / 'etcd'}",
                        f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                        f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                        f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                        f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                        "--unsafe-no-fsync",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        for attempt in range(restarts + 1):
            with api_log.open("ab") as out:
                api = subprocess.Popen(
                    [
                        str(binaries.kube_apiserver),
                        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                        "--bind-address=127.0.0.1",
                        f"--advertise-address={advertise_address}",
                        f"--secure-port={api_port}",
                        f"--cert-dir={certs}",
                        f"--token-auth-file={work / 'tokens.csv'}",
                        "--service-account-issuer=https://kubernetes.default.svc",
                        f"--service-account-key-file={work / 'sa.pub'}",
                        f"--service-account-signing-key-file={work / 'sa.key'}",
                        f"--service-cluster-ip-range={SERVICE_CIDRS}",
                        "--authorization-mode=RBAC",
                        "--allow-privileged=true",
                        "--enable-priority-and-fairness=false",
                        "--profiling=false",
                        *extra_args,
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            plane.processes.append(api)
            try:
                _wait_ready(plane, api, api_log, ready_timeout)
                break
            except StartError:
                if api.poll() is None or attempt == restarts:
                    raise
                plane.processes.remove(api)
        plane.write_kubeconfig(plane.kubeconfig, admin_token, "admin")
        yield plane
    finally:
        plane.stop()
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)
