"""`helm install` of the chart onto a real kube-apiserver, with the real Helm engine: CRDs first,
then every template, as rendered, with no patching; then an upgrade and an uninstall."""

from __future__ import annotations

from pathlib import Path

import helm_python as helm
import pytest

from tests.realk8s.controlplane import ControlPlane

pytestmark = pytest.mark.realapi

CHART = Path(__file__).resolve().parents[2] / "charts" / "proxymedic"
RELEASE = "pm"
NAMESPACE = "proxymedic"


def _names(real_api: ControlPlane, path: str) -> list[str]:
    status, body = real_api.request("GET", path)
    assert status == 200, body
    return [item["metadata"]["name"] for item in body["items"]]


def test_helm_install_upgrade_uninstall(real_api: ControlPlane) -> None:
    config = helm.Config(kubeconfig_path=real_api.kubeconfig, namespace=NAMESPACE)
    with config:
        config.install(CHART, RELEASE, {}, namespace=NAMESPACE, create_namespace=True, timeout=120)
        assert _names(real_api, f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets"), "no agent DaemonSet"
        assert _names(real_api, f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"), "no operator Deployment"
        policies = _names(real_api, "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies")
        assert any(name.startswith(RELEASE) for name in policies), policies
        status, policy = real_api.request("GET", "/apis/proxymedic.io/v1alpha1/proxyhealthpolicies/coredns")
        assert status == 200, policy
        assert policy["spec"]["guardrails"]["dryRun"] is True
        assert policy["spec"]["guardrails"]["hourlyBudget"] == {"perNode": 6, "perCluster": 100}

        config.upgrade(
            CHART,
            RELEASE,
            {"agent": {"sysctlWrites": True}, "policy": {"coredns": {"dryRun": False}}},
            namespace=NAMESPACE,
            timeout=120,
        )
        status, policy = real_api.request("GET", "/apis/proxymedic.io/v1alpha1/proxyhealthpolicies/coredns")
        assert status == 200, policy
        assert policy["spec"]["guardrails"]["dryRun"] is False

        config.uninstall(RELEASE, timeout=120)
    assert not _names(real_api, f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets")
