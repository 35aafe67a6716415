"""The CRDs as generated, and as the chart ships them, install on a real kube-apiserver, and it
applies their defaults as the models do."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from proxymedic.api.crd import render_all
from proxymedic.api.policy import ProxyHealthPolicy
from tests.realk8s.controlplane import ControlPlane

pytestmark = pytest.mark.realapi

ROOT = Path(__file__).resolve().parents[2]
GROUP_PATH = "/apis/proxymedic.io/v1alpha1"


@pytest.mark.parametrize("folder", ["crds", "charts/proxymedic/crds"])
def test_crds_are_accepted_and_established(real_api: ControlPlane, folder: str) -> None:
    result = real_api.kubectl("apply", "--server-side", "--dry-run=server", "-f", str(ROOT / folder))
    assert result.returncode == 0
    for name in render_all():
        crd = yaml.safe_load((ROOT / folder / name).read_text())
        status, body = real_api.request(
            "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
        )
        assert status == 200, body
        conditions = {c["type"]: c["status"] for c in body["status"]["conditions"]}
        assert conditions.get("Established") == "True", conditions


def test_server_defaults_equal_the_models_defaults(real_api: ControlPlane) -> None:
    """An empty policy comes back from the server with exactly the defaults the models apply."""
    status, body = real_api.request(
        "POST",
        f"{GROUP_PATH}/proxyhealthpolicies?dryRun=All",
        {
            "apiVersion": "proxymedic.io/v1alpha1",
            "kind": "ProxyHealthPolicy",
            "metadata": {"name": "observe"},
        },
    )
    assert status == 201, body
    model = ProxyHealthPolicy.model_validate({"metadata": {"name": "observe"}})
    expected = model.model_dump(by_alias=True, mode="json", exclude_none=True)["spec"]
    assert body["spec"] == expected
