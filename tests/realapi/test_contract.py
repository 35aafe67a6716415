"""The contract on the real kube-apiserver: the valid examples are accepted, and every invalid
example the models reject is rejected by the server naming the same field, except the few rules
only the models can say (``MODEL_ONLY``, each with its reason), which the server accepts."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.contract.test_crd_parity import MODEL_ONLY, PLURALS
from tests.realk8s.controlplane import ControlPlane
from tests.unit.factories import intent, node_health, policy
from tests.unit.test_models import INVALID

pytestmark = pytest.mark.realapi

ROOT = Path(__file__).resolve().parents[2]
GROUP_PATH = "/apis/proxymedic.io/v1alpha1"

# The server rejects these although the emulator does not check them.
SERVER_ONLY = {
    "health-bad-time": "the server checks OpenAPI `format: date-time`; the emulator does not",
}


def submit(real_api: ControlPlane, obj: dict[str, Any]) -> tuple[int, Any]:
    """Create ``obj`` as a dry run; a NodeProxyHealth is created for real, its status a dry run."""
    body = copy.deepcopy(obj)
    body["metadata"]["name"] = f"{body['metadata']['name']}-{uuid.uuid4().hex[:8]}"
    if obj["kind"] == "NodeProxyHealth":
        body["spec"]["nodeName"] = body["metadata"]["name"]
    status_part = body.pop("status", None)
    path = f"{GROUP_PATH}/{PLURALS[obj['kind']]}"
    if status_part is None:
        return real_api.request("POST", f"{path}?dryRun=All", body)
    status, created = real_api.request("POST", path, body)
    if status != 201:
        return status, created
    created["status"] = status_part
    return real_api.request("PUT", f"{path}/{body['metadata']['name']}/status?dryRun=All", created)


@pytest.mark.parametrize("make", [policy, intent, node_health], ids=["policy", "intent", "health"])
def test_valid_examples_are_accepted(real_api: ControlPlane, make: Any) -> None:
    status, body = submit(real_api, make())
    assert status in (200, 201), body


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_example_files_are_accepted(real_api: ControlPlane, path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("apiVersion", "").startswith("proxymedic.io/"):
            status, body = submit(real_api, doc)
            assert status in (200, 201), body


@pytest.mark.parametrize(("name", "obj", "field"), [c[:3] for c in INVALID], ids=[c[0] for c in INVALID])
def test_server_rejects_what_the_models_reject(
    real_api: ControlPlane, name: str, obj: dict[str, Any], field: str
) -> None:
    status, body = submit(real_api, obj)
    if name in MODEL_ONLY and name not in SERVER_ONLY:
        assert status in (200, 201), f"the server rejects {name}, so MODEL_ONLY's reason is wrong: {body}"
        return
    assert status == 422, body
    fields = [cause.get("field", "") for cause in body["details"].get("causes", [])]
    assert any(f == field or f.startswith((field + ".", field + "[")) for f in fields), (
        field,
        body["message"],
    )


def test_server_only_rules_are_model_only_too() -> None:
    assert set(SERVER_ONLY) <= set(MODEL_ONLY)
