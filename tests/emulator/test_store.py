from __future__ import annotations

from typing import Any

import pytest

from tests.emulator.conftest import Api

pytestmark = pytest.mark.emulator

PODS = "/api/v1/namespaces/default/pods"


def pod(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"nodeName": "node-1"},
    }


async def test_create_assigns_identity_and_versions(api: Api) -> None:
    created = await api.ok("post", PODS, pod("a"))
    meta = created["metadata"]
    assert meta["namespace"] == "default"
    assert meta["uid"]
    assert meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1
    second = await api.ok("post", PODS, pod("b"))
    assert int(second["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    fetched = await api.ok("get", f"{PODS}/a")
    assert fetched == created


async def test_generate_name(api: Api) -> None:
    created = await api.ok("post", PODS, {"metadata": {"generateName": "web-"}, "spec": {}})
    assert created["metadata"]["name"].startswith("web-")
    assert len(created["metadata"]["name"]) == len("web-") + 5


async def test_create_existing_is_409_already_exists(api: Api) -> None:
    await api.ok("post", PODS, pod("a"))
    status, body = await api.call("post", PODS, pod("a"))
    assert status == 409
    assert body["reason"] == "AlreadyExists"
    assert body["message"] == 'pods "a" already exists'


async def test_create_without_name_is_422(api: Api) -> None:
    status, body = await api.call("post", PODS, {"metadata": {}, "spec": {}})
    assert status == 422
    assert body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "metadata.name"


async def test_create_with_other_namespace_in_body_is_400(api: Api) -> None:
    status, _body = await api.call("post", PODS, {"metadata": {"name": "a", "namespace": "other"}})
    assert status == 400


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/namespaces/default/nodes/n1"),  # cluster-scoped kind under a namespace
        ("get", "/api/v1/pods/a"),  # namespaced kind without a namespace
        ("post", "/api/v1/pods"),
        ("get", "/api/v1/namespaces/default/widgets"),  # unknown resource
        ("get", "/api/v1/namespaces/default/pods/a/exec"),  # unsupported subresource
    ],
    ids=[
        "cluster-kind-in-namespace",
        "namespaced-kind-cluster-wide",
        "create-cluster-wide",
        "unknown",
        "subresource",
    ],
)
async def test_wrong_scope_or_resource_is_404(api: Api, method: str, path: str) -> None:
    await api.ok("post", PODS, pod("a"))
    status, body = await api.call(method, path, {"metadata": {"name": "a"}} if method == "post" else None)
    assert status == 404
    assert body["kind"] == "Status"


async def test_get_missing_is_404_not_found(api: Api) -> None:
    status, body = await api.call("get", f"{PODS}/nope")
    assert status == 404
    assert body["reason"] == "NotFound"
    assert body["message"] == 'pods "nope" not found'


async def test_list_has_kind_items_and_current_version(api: Api) -> None:
    await api.ok("post", PODS, pod("b"))
    await api.ok("post", "/api/v1/namespaces/other/pods", pod("a"))
    created = await api.ok("post", PODS, pod("a"))
    listed = await api.ok("get", PODS)
    assert listed["kind"] == "PodList"
    assert listed["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert [item["metadata"]["name"] for item in listed["items"]] == ["a", "b"]
    everywhere = await api.ok("get", "/api/v1/pods")
    assert len(everywhere["items"]) == 3


async def test_put_with_stale_version_is_409_conflict(api: Api) -> None:
    created = await api.ok("post", PODS, pod("a"))
    first = dict(created, spec={"nodeName": "node-2"})
    updated = await api.ok("put", f"{PODS}/a", first)
    assert updated["spec"] == {"nodeName": "node-2"}
    status, body = await api.call("put", f"{PODS}/a", dict(created, spec={"nodeName": "node-3"}))
    assert status == 409
    assert body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]


async def test_put_keeps_server_owned_metadata(api: Api) -> None:
    created = await api.ok("post", PODS, pod("a"))
    body = {"metadata": {"name": "a", "uid": "forged", "generation": 99}, "spec": {"nodeName": "x"}}
    updated = await api.ok("put", f"{PODS}/a", body)
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    assert updated["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]
    assert updated["metadata"]["generation"] == 2


async def test_merge_patch_null_deletes_and_lists_replace(api: Api) -> None:
    body = pod("a", app="web", tier="front")
    body["spec"] = {"nodeName": "node-1", "tolerations": [{"key": "a"}, {"key": "b"}]}
    await api.ok("post", PODS, body)
    patch = {"metadata": {"labels": {"tier": None, "new": "yes"}}, "spec": {"tolerations": [{"key": "c"}]}}
    patched = await api.ok("patch", f"{PODS}/a", patch, content_type="application/merge-patch+json")
    assert patched["metadata"]["labels"] == {"app": "web", "new": "yes"}
    assert patched["spec"] == {"nodeName": "node-1", "tolerations": [{"key": "c"}]}


async def test_strategic_merge_patch_is_applied_as_merge_patch(api: Api) -> None:
    await api.ok("post", PODS, pod("a", app="web"))
    patched = await api.ok(
        "patch",
        f"{PODS}/a",
        {"metadata": {"labels": {"app": None}}},
        content_type="application/strategic-merge-patch+json",
    )
    assert patched["metadata"]["labels"] == {}


async def test_json_patch_with_test_operation(api: Api) -> None:
    created = await api.ok("post", PODS, pod("a"))
    rv = created["metadata"]["resourceVersion"]
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x"]},
    ]
    patched = await api.ok("patch", f"{PODS}/a", ops, content_type="application/json-patch+json")
    assert patched["metadata"]["finalizers"] == ["x"]
    status, _body = await api.call("patch", f"{PODS}/a", ops, content_type="application/json-patch+json")
    assert status == 422  # the test op fails on the stale version; Kopf relies on this answer


async def test_unknown_patch_type_is_415(api: Api) -> None:
    await api.ok("post", PODS, pod("a"))
    status, _ = await api.call("patch", f"{PODS}/a", {}, content_type="text/plain")
    assert status == 415


async def test_merge_patch_with_stale_version_is_409(api: Api) -> None:
    created = await api.ok("post", PODS, pod("a"))
    await api.ok(
        "patch",
        f"{PODS}/a",
        {"metadata": {"labels": {"x": "y"}}},
        content_type="application/merge-patch+json",
    )
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"], "labels": {"x": "z"}}}
    status, _ = await api.call("patch", f"{PODS}/a", stale, content_type="application/merge-patch+json")
    assert status == 409


async def test_generation_bumps_only_outside_metadata_and_status(api: Api) -> None:
    await api.ok("post", PODS, pod("a"))
    merge = {"content_type": "application/merge-patch+json"}
    labelled = await api.ok("patch", f"{PODS}/a", {"metadata": {"labels": {"a": "b"}}}, **merge)
    assert labelled["metadata"]["generation"] == 1
    with_status = await api.ok("patch", f"{PODS}/a", {"status": {"phase": "Running"}}, **merge)
    assert with_status["metadata"]["generation"] == 1
    respec = await api.ok("patch", f"{PODS}/a", {"spec": {"nodeName": "node-9"}}, **merge)
    assert respec["metadata"]["generation"] == 2


async def test_noop_patch_keeps_the_version(api: Api) -> None:
    created = await api.ok("post", PODS, pod("a", app="web"))
    same = await api.ok(
        "patch",
        f"{PODS}/a",
        {"metadata": {"labels": {"app": "web"}}},
        content_type="application/merge-patch+json",
    )
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_delete_without_finalizers_removes_at_once(api: Api) -> None:
    await api.ok("post", PODS, pod("a"))
    deleted = await api.ok("delete", f"{PODS}/a")
    assert deleted["metadata"]["name"] == "a"
    status, _ = await api.call("get", f"{PODS}/a")
    assert status == 404


async def test_finalizers_hold_deletion_until_removed(api: Api) -> None:
    body = pod("a")
    body["metadata"]["finalizers"] = ["proxymedic.io/x", "proxymedic.io/y"]
    await api.ok("post", PODS, body)
    marked = await api.ok("delete", f"{PODS}/a")
    assert marked["metadata"]["deletionTimestamp"]
    again = await api.ok("delete", f"{PODS}/a")
    assert again["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]
    merge = {"content_type": "application/merge-patch+json"}
    held = await api.ok("patch", f"{PODS}/a", {"metadata": {"finalizers": ["proxymedic.io/y"]}}, **merge)
    assert held["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]
    assert (await api.call("get", f"{PODS}/a"))[0] == 200
    await api.ok("patch", f"{PODS}/a", {"metadata": {"finalizers": None}}, **merge)
    assert (await api.call("get", f"{PODS}/a"))[0] == 404


async def test_delete_with_stale_precondition_is_409(api: Api) -> None:
    await api.ok("post", PODS, pod("a"))
    options = {"kind": "DeleteOptions", "preconditions": {"resourceVersion": "999"}}
    status, _ = await api.call("delete", f"{PODS}/a", options)
    assert status == 409


async def test_delete_collection_by_label(api: Api) -> None:
    await api.ok("post", PODS, pod("a", app="web"))
    await api.ok("post", PODS, pod("b", app="db"))
    deleted = await api.ok("delete", PODS, labelSelector="app=web")
    assert [item["metadata"]["name"] for item in deleted["items"]] == ["a"]
    remaining = await api.ok("get", PODS)
    assert [item["metadata"]["name"] for item in remaining["items"]] == ["b"]


async def test_namespace_objects_are_addressable(api: Api) -> None:
    await api.ok("post", "/api/v1/namespaces", {"metadata": {"name": "team-a"}})
    fetched = await api.ok("get", "/api/v1/namespaces/team-a")
    assert fetched["kind"] == "Namespace"
    assert "namespace" not in fetched["metadata"]
    patched = await api.ok(
        "patch",
        "/api/v1/namespaces/team-a/status",
        {"status": {"phase": "Active"}},
        content_type="application/merge-patch+json",
    )
    assert patched["status"] == {"phase": "Active"}
    listed = await api.ok("get", "/api/v1/namespaces", fieldSelector="status.phase=Active")
    assert [item["metadata"]["name"] for item in listed["items"]] == ["team-a"]
    # Objects inside a namespace are still addressed as before.
    await api.ok("post", "/api/v1/namespaces/team-a/pods", pod("a"))
    assert (await api.ok("get", "/api/v1/namespaces/team-a/pods/a"))["metadata"]["namespace"] == "team-a"


@pytest.mark.parametrize("name", ["Upper", "under_score", "-dash", "x" * 254])
async def test_invalid_names_are_422(api: Api, name: str) -> None:
    status, body = await api.call("post", PODS, pod(name))
    assert status == 422
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    assert "a lowercase RFC 1123 subdomain" in body["message"]


async def test_put_with_another_name_is_400(api: Api) -> None:
    await api.ok("post", PODS, pod("a"))
    status, body = await api.call("put", f"{PODS}/a", pod("b"))
    assert status == 400
    assert body["message"] == "the name of the object (b) does not match the name on the URL (a)"
