"""Security on a real kube-apiserver: the chart's RBAC and its ValidatingAdmissionPolicy, with real
service-account tokens. An agent's token is bound to a Pod on its node, so the API server puts the
node's name in it, as the kubelet's projected token does."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from tests.realk8s.controlplane import ControlPlane
from tests.unit.factories import intent, node_health

pytestmark = pytest.mark.realapi

CHART = Path(__file__).resolve().parents[2] / "charts" / "proxymedic"
RELEASE = "sec"
NAMESPACE = "sec-system"
GROUP_PATH = "/apis/proxymedic.io/v1alpha1"


@dataclass(frozen=True)
class Tokens:
    agent_on_a: str
    agent_unbound: str
    operator: str


def _service_account(real_api: ControlPlane, component: str) -> str:
    status, body = real_api.request(
        "GET",
        f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts?labelSelector=app.kubernetes.io/component={component}",
    )
    assert status == 200, body
    assert len(body["items"]) == 1, body["items"]
    return str(body["items"][0]["metadata"]["name"])


def _pod_on(real_api: ControlPlane, node: str, service_account: str) -> dict[str, Any]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"agent-{node}", "namespace": NAMESPACE},
        "spec": {
            "nodeName": node,
            "serviceAccountName": service_account,
            "containers": [{"name": "agent", "image": "proxymedic:test"}],
        },
    }
    status, body = real_api.request("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", pod)
    assert status == 201, body
    return dict(body)


@pytest.fixture(scope="module")
def tokens(real_api: ControlPlane) -> Iterator[Tokens]:
    values = {"policy": {"coredns": {"enabled": False}}, "operator": {"peering": {"enabled": False}}}
    config = helm.Config(kubeconfig_path=real_api.kubeconfig, namespace=NAMESPACE)
    with config:
        config.install(CHART, RELEASE, values, namespace=NAMESPACE, create_namespace=True, timeout=120)
        for node in ("node-a", "node-b"):
            status, body = real_api.request(
                "POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}
            )
            assert status == 201, body
        agent_sa = _service_account(real_api, "agent")
        operator_sa = _service_account(real_api, "operator")
        pod = _pod_on(real_api, "node-a", agent_sa)
        tokens = Tokens(
            agent_on_a=real_api.service_account_token(NAMESPACE, agent_sa, pod=pod),
            agent_unbound=real_api.service_account_token(NAMESPACE, agent_sa),
            operator=real_api.service_account_token(NAMESPACE, operator_sa),
        )
        _wait_for_admission_policy(real_api, tokens.agent_on_a)
        yield tokens
        config.uninstall(RELEASE, timeout=120)


def _wait_for_admission_policy(real_api: ControlPlane, token: str) -> None:
    """The server enforces a new ValidatingAdmissionPolicy once its informer has it (about a
    second after creation): wait for the first denial instead of guessing a delay."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, body = real_api.request(
            "POST", f"{GROUP_PATH}/nodeproxyhealths?dryRun=All", _report("node-b"), token=token
        )
        if status == 403:
            return
        assert status == 201, body
        time.sleep(0.2)
    raise AssertionError("the admission policy was not enforced within 60 s of its creation")


def _report(node: str) -> dict[str, Any]:
    return {
        "apiVersion": "proxymedic.io/v1alpha1",
        "kind": "NodeProxyHealth",
        "metadata": {"name": node},
        "spec": {"nodeName": node},
    }


def _message(body: Any) -> str:
    return str(body.get("message", body)) if isinstance(body, dict) else str(body)


def test_agent_writes_its_own_nodes_report(real_api: ControlPlane, tokens: Tokens) -> None:
    status, body = real_api.request(
        "POST", f"{GROUP_PATH}/nodeproxyhealths", _report("node-a"), token=tokens.agent_on_a
    )
    assert status == 201, body
    status, body = real_api.request(
        "PATCH",
        f"{GROUP_PATH}/nodeproxyhealths/node-a/status",
        {"status": node_health()["status"]},
        token=tokens.agent_on_a,
        content_type="application/merge-patch+json",
    )
    assert status == 200, body


def test_agent_cannot_write_another_nodes_report(real_api: ControlPlane, tokens: Tokens) -> None:
    status, body = real_api.request(
        "POST", f"{GROUP_PATH}/nodeproxyhealths", _report("node-b"), token=tokens.agent_on_a
    )
    assert status == 403, body
    assert "may write only its own NodeProxyHealth" in _message(body)


def test_agent_token_without_a_node_writes_no_report(real_api: ControlPlane, tokens: Tokens) -> None:
    status, body = real_api.request(
        "POST", f"{GROUP_PATH}/nodeproxyhealths", _report("node-b"), token=tokens.agent_unbound
    )
    assert status == 403, body
    assert "names no node" in _message(body)


def test_agent_cannot_create_intents(real_api: ControlPlane, tokens: Tokens) -> None:
    status, body = real_api.request(
        "POST", f"{GROUP_PATH}/remediationintents?dryRun=All", intent(), token=tokens.agent_on_a
    )
    assert status == 403, body


def test_operator_creates_intents_but_writes_no_report(real_api: ControlPlane, tokens: Tokens) -> None:
    status, body = real_api.request(
        "POST", f"{GROUP_PATH}/remediationintents?dryRun=All", intent(), token=tokens.operator
    )
    assert status == 201, body
    status, body = real_api.request(
        "POST", f"{GROUP_PATH}/nodeproxyhealths?dryRun=All", _report("node-b"), token=tokens.operator
    )
    assert status == 403, body


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/api/v1/namespaces/kube-system/pods/kube-proxy-x?dryRun=All", True),
        ("DELETE", "/api/v1/namespaces/default/pods/web?dryRun=All", False),
        ("GET", "/api/v1/namespaces/kube-system/secrets", False),
        ("DELETE", "/api/v1/nodes/node-b?dryRun=All", False),
        ("POST", "/api/v1/namespaces/default/events", True),
        ("GET", "/api/v1/events?fieldSelector=reason%3DKubeProxyRestarted", True),
    ],
    ids=[
        "delete-kube-proxy-pod",
        "delete-other-pod",
        "read-secrets",
        "delete-node",
        "post-event",
        "list-restart-events",
    ],
)
def test_operator_rights_are_what_its_rbac_grants(
    real_api: ControlPlane, tokens: Tokens, method: str, path: str, allowed: bool
) -> None:
    body = (
        {"apiVersion": "v1", "kind": "Event", "metadata": {"generateName": "t-"}, "involvedObject": {}}
        if method == "POST"
        else None
    )
    status, answer = real_api.request(method, path, body, token=tokens.operator)
    if allowed:
        assert status != 403, answer  # 404 for a pod that is not there is fine: the API let it ask
    else:
        assert status == 403, answer
