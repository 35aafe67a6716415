from __future__ import annotations

import copy
import logging
from typing import Any

import pytest

from proxymedic.emulator.resources import InvalidDefinitionError, kopf_peering_crds, specs_from_crd
from proxymedic.emulator.server import KubernetesApiEmulator
from tests.emulator import crds
from tests.emulator.conftest import Api

pytestmark = pytest.mark.emulator

PROBES = f"/apis/{crds.API_VERSION}/{crds.PLURAL}"
MERGE = {"content_type": "application/merge-patch+json"}


async def invalid(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    status, result = await api.call("post", PROBES, body)
    assert status == 422, result
    assert result["kind"] == "Status"
    assert result["reason"] == "Invalid"
    assert result["details"]["kind"] == crds.KIND
    assert result["details"]["group"] == crds.GROUP
    return result  # type: ignore[no-any-return]


async def test_defaults_are_applied(api: Api) -> None:
    created = await api.ok("post", PROBES, crds.probe("p"))
    assert created["spec"] == {"target": "10.0.0.1", "replicas": 1, "minReplicas": 0, "mode": "watch"}


async def test_unknown_fields_are_pruned_except_where_preserved(api: Api) -> None:
    body = crds.probe("p", bogus=1, extra={"anything": {"goes": True}}, labels={"a": "b"})
    body["unknownTop"] = {"x": 1}
    created = await api.ok("post", PROBES, body)
    assert "bogus" not in created["spec"]
    assert "unknownTop" not in created
    assert created["spec"]["extra"] == {"anything": {"goes": True}}
    assert created["spec"]["labels"] == {"a": "b"}
    patched = await api.ok("patch", f"{PROBES}/p", {"spec": {"sneaky": 1}}, **MERGE)
    assert "sneaky" not in patched["spec"]


async def test_invalid_value_message_is_shaped_like_the_real_server(api: Api) -> None:
    result = await invalid(api, crds.probe("p", replicas=0))
    assert result["message"] == (
        'Probe.test.proxymedic.io "p" is invalid: spec.replicas: Invalid value: 0: '
        "spec.replicas in body should be greater than or equal to 1"
    )
    assert result["details"]["name"] == "p"
    assert result["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "field": "spec.replicas",
            "message": "Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
        }
    ]


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ({"mode": "delete"}, "spec.mode", 'Unsupported value: "delete": supported values: "watch", "repair"'),
        (
            {"replicas": "two"},
            "spec.replicas",
            'Invalid value: "two": spec.replicas in body must be of type integer',
        ),
        ({"note": "x" * 21}, "spec.note", "Too long: may not be more than 20 bytes"),
        ({"port": 1.5}, "spec.port", "Invalid value: 1.5"),
        ({"labels": {"a": 1}}, "spec.labels.a", "must be of type string"),
        ({"nodes": ["node-1", "node-1"]}, "spec.nodes", "Invalid value"),
    ],
    ids=["enum", "type", "max-length", "int-or-string", "additional-properties", "list-set"],
)
async def test_schema_violations(api: Api, spec: dict[str, Any], field: str, fragment: str) -> None:
    result = await invalid(api, crds.probe("p", **spec))
    causes = result["details"]["causes"]
    assert [cause["field"] for cause in causes] == [field]
    assert fragment in causes[0]["message"]
    assert fragment in result["message"]


async def test_required_field(api: Api) -> None:
    body = crds.probe("p")
    del body["spec"]["target"]
    result = await invalid(api, body)
    assert result["details"]["causes"] == [
        {"reason": "FieldValueRequired", "field": "spec.target", "message": "Required value"},
    ]


@pytest.mark.parametrize(("port", "note"), [(8080, None), ("http", "hello")], ids=["int", "string"])
async def test_int_or_string_and_nullable_accept_valid_values(api: Api, port: object, note: object) -> None:
    created = await api.ok("post", PROBES, crds.probe("p", port=port, note=note))
    assert created["spec"]["port"] == port


async def test_several_causes_are_listed(api: Api) -> None:
    result = await invalid(api, crds.probe("p", replicas=0, mode="x"))
    assert len(result["details"]["causes"]) == 2
    assert result["message"].startswith('Probe.test.proxymedic.io "p" is invalid: [spec.mode: ')


async def test_cel_rule_with_kubernetes_isip(api: Api) -> None:
    result = await invalid(api, crds.probe("p", target="not-an-ip"))
    assert result["message"] == (
        'Probe.test.proxymedic.io "p" is invalid: '
        'spec.target: Invalid value: "not-an-ip": must be an IP address'
    )
    await api.ok("post", PROBES, crds.probe("v6", target="fd00::1"))


async def test_cel_cross_field_rule(api: Api) -> None:
    result = await invalid(api, crds.probe("p", replicas=2, minReplicas=3))
    assert result["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "field": "spec",
            "message": 'Invalid value: "object": minReplicas must not exceed replicas',
        }
    ]


async def test_cel_message_expression(api: Api) -> None:
    result = await invalid(api, crds.probe("p", nodes=["node-1", "worker-2"]))
    assert result["details"]["causes"][0]["message"] == 'Invalid value: "array": bad node name among 2 nodes'


async def test_cel_transition_rule_runs_only_on_update(api: Api) -> None:
    await api.ok("post", PROBES, crds.probe("p"))
    status, result = await api.call("patch", f"{PROBES}/p", {"spec": {"target": "10.0.0.2"}}, **MERGE)
    assert status == 422
    assert result["message"] == (
        'Probe.test.proxymedic.io "p" is invalid: spec.target: Invalid value: "10.0.0.2": target is immutable'
    )
    current = await api.ok("get", f"{PROBES}/p")
    status, result = await api.call("put", f"{PROBES}/p", dict(current, spec={"target": "10.0.0.3"}))
    assert status == 422
    assert "target is immutable" in result["message"]
    await api.ok("patch", f"{PROBES}/p", {"spec": {"replicas": 4}}, **MERGE)


async def test_put_of_a_custom_resource_needs_a_resource_version(api: Api) -> None:
    await api.ok("post", PROBES, crds.probe("p"))
    status, result = await api.call("put", f"{PROBES}/p", crds.probe("p", replicas=2))
    assert status == 422
    assert result["details"]["causes"][0]["field"] == "metadata.resourceVersion"


async def test_validation_also_guards_status_writes(api: Api) -> None:
    await api.ok("post", PROBES, crds.probe("p"))
    status, _ = await api.call("patch", f"{PROBES}/p/status", {"status": {"phase": 5}}, **MERGE)
    assert status == 422


async def test_uncompilable_rule_is_skipped_with_a_warning(
    emulator: KubernetesApiEmulator, api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    crd = copy.deepcopy(crds.probe_crd())
    crd["spec"]["names"] = {"kind": "Odd", "plural": "odds"}
    crd["metadata"]["name"] = f"odds.{crds.GROUP}"
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec_schema["x-kubernetes-validations"] = [
        {"rule": "self.replicas >", "message": "syntax error"},
        {"rule": "self.target.ip().family() == 4", "message": "needs an unavailable library"},
        {"rule": "self.replicas < 10", "message": "too many"},
    ]
    with caplog.at_level(logging.WARNING, logger="proxymedic.emulator.cel_rules"):
        emulator.register_crd(crd)
    assert len(caplog.records) == 2
    path = f"/apis/{crds.API_VERSION}/odds"
    await api.ok("post", path, crds.probe("p", replicas=3))
    status, result = await api.call("post", path, crds.probe("q", replicas=30))
    assert status == 422
    assert "too many" in result["message"]


async def test_discovery_serves_the_crd(api: Api) -> None:
    group = await api.ok("get", f"/apis/{crds.GROUP}")
    assert group["versions"] == [{"groupVersion": crds.API_VERSION, "version": crds.VERSION}]
    resources = await api.ok("get", f"/apis/{crds.API_VERSION}")
    by_name = {resource["name"]: resource for resource in resources["resources"]}
    assert set(by_name) == {"probes", "probes/status"}
    probes = by_name["probes"]
    assert probes["kind"] == "Probe"
    assert probes["singularName"] == "probe"
    assert probes["shortNames"] == ["prb"]
    assert probes["namespaced"] is False
    assert "watch" in probes["verbs"]
    assert "patch" in probes["verbs"]
    core = await api.ok("get", "/api/v1")
    pods = next(resource for resource in core["resources"] if resource["name"] == "pods")
    assert pods["namespaced"] is True
    assert pods["kind"] == "Pod"
    leases = await api.ok("get", "/apis/coordination.k8s.io/v1")
    assert [resource["kind"] for resource in leases["resources"]] == ["Lease"]


async def test_cluster_scoped_crd_is_not_served_in_namespaces(api: Api) -> None:
    status, _ = await api.call(
        "post", f"/apis/{crds.API_VERSION}/namespaces/default/{crds.PLURAL}", crds.probe("p")
    )
    assert status == 404


async def test_kopf_peering_crds(emulator: KubernetesApiEmulator, api: Api) -> None:
    for crd in kopf_peering_crds():
        emulator.register_crd(crd)
    peering = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "default"}}
    await api.ok("post", "/apis/kopf.dev/v1/clusterkopfpeerings", peering)
    patched = await api.ok(
        "patch",
        "/apis/kopf.dev/v1/clusterkopfpeerings/default",
        {"status": {"op-1": {"priority": 0}}},
        **MERGE,
    )
    assert patched["status"] == {"op-1": {"priority": 0}}
    namespaced = dict(peering, kind="KopfPeering")
    await api.ok("post", "/apis/kopf.dev/v1/namespaces/default/kopfpeerings", namespaced)


def test_specs_from_crd_rejects_other_manifests() -> None:
    with pytest.raises(InvalidDefinitionError):
        specs_from_crd({"apiVersion": "v1", "kind": "ConfigMap"})
    (spec,) = specs_from_crd(crds.probe_crd(scope="Namespaced"))
    assert spec.namespaced
    assert spec.status_subresource
    assert spec.group_kind == "Probe.test.proxymedic.io"


async def test_crd_posted_over_http_is_served_and_removed(api: Api) -> None:
    crd = copy.deepcopy(crds.probe_crd())
    crd["spec"]["names"] = {"kind": "Gauge", "plural": "gauges"}
    crd["metadata"]["name"] = f"gauges.{crds.GROUP}"
    created = await api.ok("post", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    conditions = {condition["type"]: condition["status"] for condition in created["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    gauges = f"/apis/{crds.API_VERSION}/gauges"
    gauge = await api.ok("post", gauges, dict(crds.probe("g"), kind="Gauge"))
    assert gauge["spec"]["replicas"] == 1
    await api.ok("delete", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gauges.{crds.GROUP}")
    status, _ = await api.call("get", gauges)
    assert status == 404


async def test_malformed_crd_is_422(api: Api) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "bad.example.com"},
        "spec": {"group": "example.com"},
    }
    status, result = await api.call("post", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert status == 422
    assert result["reason"] == "Invalid"


def _crd_with_defaulted_rule(default: dict[str, Any]) -> dict[str, Any]:
    crd = copy.deepcopy(crds.probe_crd())
    crd["spec"]["names"] = {"kind": "Budget", "plural": "budgets"}
    crd["metadata"]["name"] = f"budgets.{crds.GROUP}"
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec_schema["properties"]["budget"] = {
        "type": "object",
        "properties": {
            "perNode": {"type": "integer", "default": 6},
            "perCluster": {"type": "integer", "default": 100},
        },
        "x-kubernetes-validations": [
            {"rule": "self.perNode <= self.perCluster", "message": "perNode too big"}
        ],
        "default": default,
    }
    return crd


async def test_crd_whose_default_fails_its_own_rule_is_rejected(api: Api) -> None:
    """kube-apiserver checks a default against its node's rules as written, nested defaults not
    applied: ``{}`` fails a rule that reads a field. The emulator agrees."""
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    status, result = await api.call("post", path, _crd_with_defaulted_rule({}))
    assert status == 422, result
    assert "properties[budget].default" in result["message"]
    with pytest.raises(InvalidDefinitionError, match=r"properties\[budget\]\.default"):
        KubernetesApiEmulator().register_crd(_crd_with_defaulted_rule({}))
    await api.ok("post", path, _crd_with_defaulted_rule({"perNode": 6, "perCluster": 100}))
