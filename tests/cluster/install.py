"""ProxyMedic installed as a user installs it, on the real API server of the VM.

The chart is installed with the real Helm engine (CRDs first). The operator and the agent then
run as processes of this machine with the arguments the chart rendered into its Deployment and
DaemonSet, each with a TokenRequest token of the ServiceAccount the chart created: the agent's
token is bound to an agent Pod object on node-1, so the API server writes the node's name into
it and the chart's ValidatingAdmissionPolicy checks that claim on every report.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm

from tests.cluster import netlab
from tests.cluster.kubeproxy import NODE, Relay, relayed_kubeconfig, stop_process
from tests.realk8s.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "proxymedic"
RELEASE, NAMESPACE = "proxymedic", "proxymedic"
VALUES: dict[str, Any] = {
    "policy": {"coredns": {"enabled": False}},  # the tests apply their own policy, or none
    "agent": {"sysctlWrites": True},
}


def install_chart(plane: ControlPlane) -> None:
    config = helm.Config(kubeconfig_path=plane.kubeconfig, namespace=NAMESPACE)
    with config:
        config.install(CHART, RELEASE, VALUES, namespace=NAMESPACE, create_namespace=True, timeout=300)


def _one(plane: ControlPlane, path: str, component: str) -> dict[str, Any]:
    status, body = plane.request("GET", f"{path}?labelSelector=app.kubernetes.io/component={component}")
    assert status == 200, body
    assert len(body["items"]) == 1, f"expected one {component} object at {path}: {body['items']}"
    return dict(body["items"][0])


def _pod(plane: ControlPlane, name: str, template: dict[str, Any]) -> dict[str, Any]:
    """A Pod object from the workload's template, bound to node-1 (no kubelet runs it)."""
    spec = dict(template["spec"])
    spec["nodeName"] = NODE
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": template["metadata"].get("labels", {})},
        "spec": spec,
    }
    status, body = plane.request("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", pod)
    assert status == 201, f"cannot create pod {name}: {body}"
    return dict(body)


@dataclass
class Component:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
            )

    def stop(self) -> None:
        stop_process(self.proc)


@dataclass
class ProxyMedic:
    operator: Component
    agent: Component
    kubeconfigs: dict[str, Path] = field(default_factory=dict)

    def start(self) -> None:
        self.agent.start()
        self.operator.start()

    def stop(self) -> None:
        self.operator.stop()
        self.agent.stop()

    @property
    def sense_interval_s(self) -> float:
        """The agent's --sense-interval as the chart rendered it (a Go duration in s or m)."""
        for arg in self.agent.argv:
            if arg.startswith("--sense-interval="):
                value = arg.split("=", 1)[1]
                return float(value[:-1]) * (60 if value.endswith("m") else 1)
        raise AssertionError(f"the agent has no --sense-interval: {self.agent.argv}")

    def alive(self) -> list[str]:
        """Names of the components whose process has exited (empty when both run)."""
        return [c.name for c in (self.operator, self.agent) if c.proc is None or c.proc.poll() is not None]


def _command(workload: dict[str, Any], kubeconfig: Path) -> list[str]:
    container = workload["spec"]["template"]["spec"]["containers"][0]
    return [str(Path(sys.executable).parent / "proxymedic"), *container["args"], f"--kubeconfig={kubeconfig}"]


def prepare(
    plane: ControlPlane, workdir: Path, logs: Path, node_ns: str | None = None, relay: Relay | None = None
) -> ProxyMedic:
    """Identities and commands of the operator and the agent, from what the chart installed. With
    ``node_ns`` the agent runs in that network namespace (the node) and reaches the API server
    through ``relay`` on the namespace's gateway."""
    apps = f"/apis/apps/v1/namespaces/{NAMESPACE}"
    deployment = _one(plane, f"{apps}/deployments", "operator")
    daemonset = _one(plane, f"{apps}/daemonsets", "agent")
    operator_pod = _pod(plane, "proxymedic-operator-0", deployment["spec"]["template"])
    agent_pod = _pod(plane, f"proxymedic-agent-{NODE}", daemonset["spec"]["template"])
    kubeconfigs = {}
    for name, pod in (("operator", operator_pod), ("agent", agent_pod)):
        account = pod["spec"]["serviceAccountName"]
        token = plane.service_account_token(NAMESPACE, account, pod=pod)
        kubeconfigs[name] = plane.write_kubeconfig(workdir / f"{name}.kubeconfig", token, name)
        if name == "agent" and relay is not None:
            path = workdir / "agent.kubeconfig"
            kubeconfigs[name] = relayed_kubeconfig(plane, relay, netlab.HOST_GATEWAY, path, token)
    agent = _command(daemonset, kubeconfigs["agent"])
    if node_ns is not None:
        agent = ["ip", "netns", "exec", node_ns, *agent]
    return ProxyMedic(
        operator=Component(
            "operator", _command(deployment, kubeconfigs["operator"]), {}, logs / "operator.log"
        ),
        agent=Component("agent", agent, {"NODE_NAME": NODE}, logs / "agent.log"),
        kubeconfigs=kubeconfigs,
    )
