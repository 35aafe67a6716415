"""The generated CRDs reject what the models reject: each invalid example is POSTed to the
emulator serving the CRDs from crds/, and the API answers 422 naming the same field.

A few rules live only in the models, because a structural schema cannot say them (they are
listed in MODEL_ONLY with the reason); `proxymedic validate` catches those before `kubectl apply`.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxymedic.emulator.runner import serve
from proxymedic.emulator.server import KubernetesApiEmulator
from tests.unit.factories import intent, node_health, policy
from tests.unit.test_models import INVALID

pytestmark = pytest.mark.emulator

CRDS = Path(__file__).resolve().parents[2] / "crds"
PLURALS = {
    "ProxyHealthPolicy": "proxyhealthpolicies",
    "RemediationIntent": "remediationintents",
    "NodeProxyHealth": "nodeproxyhealths",
}

MODEL_ONLY = {
    "policy-unknown-field": "a structural schema prunes unknown fields instead of rejecting them",
    "policy-window-zone": "no CEL function knows the IANA time-zone database",
    "intent-dead-is-live": "comparing two 1,000-item lists exceeds the CEL cost budget",
    "intent-expiry-before-decision": "kept out of CEL: timestamps are compared by the agent anyway",
    "intent-sysctl-not-allowed": "the allowed sysctl names are the agent's to enforce",
    "health-bad-time": "OpenAPI format checks are not enforced by the emulator",
}


@pytest.fixture
async def api() -> AsyncIterator[KubernetesApiEmulator]:
    async with serve() as emulator:
        for path in sorted(CRDS.glob("*.yaml")):
            emulator.register_crd(yaml.safe_load(path.read_text()))
        yield emulator


async def post(api: KubernetesApiEmulator, obj: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    path = f"/apis/proxymedic.io/v1alpha1/{PLURALS[obj['kind']]}"
    body = copy.deepcopy(obj)
    body.pop("status", None)  # the status subresource ignores it on create
    async with api.post(path, json=body) as response:
        return response.status, await response.json()


async def put_status(api: KubernetesApiEmulator, obj: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Create the object, then write its status: NodeProxyHealth's data lives there."""
    status, created = await post(api, obj)
    assert status == 201, created
    created["status"] = obj["status"]
    path = f"/apis/proxymedic.io/v1alpha1/{PLURALS[obj['kind']]}/{obj['metadata']['name']}/status"
    async with api.put(path, json=created) as response:
        return response.status, await response.json()


@pytest.mark.parametrize("make", [policy, intent, node_health], ids=["policy", "intent", "health"])
async def test_valid_examples_are_accepted(api: KubernetesApiEmulator, make: Any) -> None:
    obj = make()
    status, body = await (put_status(api, obj) if "status" in obj else post(api, obj))
    assert status in (200, 201), body


CASES = [case for case in INVALID if case[0] not in MODEL_ONLY]


@pytest.mark.parametrize(("obj", "field", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_schema_rejects_what_the_models_reject(
    api: KubernetesApiEmulator, obj: dict[str, Any], field: str, reason: str
) -> None:
    status, body = await (put_status(api, obj) if obj["kind"] == "NodeProxyHealth" else post(api, obj))
    assert status == 422, body
    assert body["reason"] == "Invalid"
    fields = [cause["field"] for cause in body["details"]["causes"]]
    assert any(f == field or f.startswith((field + ".", field + "[")) for f in fields), (
        field,
        body["message"],
    )


def test_model_only_rules_are_few_and_explained() -> None:
    assert set(MODEL_ONLY) <= {case[0] for case in INVALID}
    assert len(CASES) >= 5 * 3


async def test_defaults_are_applied_by_the_server(api: KubernetesApiEmulator) -> None:
    status, body = await post(
        api,
        {
            "apiVersion": "proxymedic.io/v1alpha1",
            "kind": "ProxyHealthPolicy",
            "metadata": {"name": "observe"},
        },
    )
    assert status == 201, body
    spec = body["spec"]
    assert spec["services"]["protocols"] == ["UDP"]
    assert spec["actions"]["flushStaleConnections"] == {"enabled": False}
    assert spec["actions"]["restartKubeProxy"]["staleAfter"] == "1m30s"
    assert spec["actions"]["restartKubeProxy"]["target"]["labelSelector"]["matchLabels"] == {
        "k8s-app": "kube-proxy"
    }
    assert spec["guardrails"]["maxConcurrentKubeProxyRestarts"] == 1


async def test_intent_spec_is_immutable(api: KubernetesApiEmulator) -> None:
    status, created = await post(api, intent())
    assert status == 201, created
    path = f"/apis/proxymedic.io/v1alpha1/remediationintents/{created['metadata']['name']}"
    async with api.patch(
        path,
        json={"spec": {"deadBackends": ["10.244.9.9"]}},
        headers={"Content-Type": "application/merge-patch+json"},
    ) as response:
        assert response.status == 422
        assert "spec is immutable" in (await response.json())["message"]
