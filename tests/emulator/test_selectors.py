from __future__ import annotations

import pytest

from proxymedic.emulator.selectors import SelectorError, parse_field_selector, parse_label_selector
from tests.emulator.conftest import Api

pytestmark = pytest.mark.emulator

LABELS = {"app": "web", "tier": "front", "env": "prod"}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app!=web", False),
        ("app!=db", True),
        ("missing!=x", True),
        ("app in (web,db)", True),
        ("app in (db, cache)", False),
        ("app notin (db,cache)", True),
        ("app notin (web)", False),
        ("missing notin (x)", True),
        ("tier", True),
        ("missing", False),
        ("!missing", True),
        ("!tier", False),
        ("app=web,tier in (front,back),!missing", True),
        ("app=web,env=dev", False),
    ],
    ids=lambda value: repr(value) if isinstance(value, str) else None,
)
def test_label_selector(selector: str, expected: bool) -> None:
    obj = {"metadata": {"labels": LABELS}}
    assert parse_label_selector(selector).matches(obj) is expected


@pytest.mark.parametrize("selector", ["a=b=c", "a in b", "(x)"])
def test_label_selector_syntax_errors(selector: str) -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(selector)


def test_field_selector_rejects_unsupported_fields() -> None:
    with pytest.raises(SelectorError, match=r"field label not supported: spec\.foo"):
        parse_field_selector("spec.foo=1", frozenset({"metadata.name"}))


def pod(name: str, node: str, ns: str = "default", **labels: str) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": ns, "labels": labels}, "spec": {"nodeName": node}}


async def test_list_by_labels_and_fields(api: Api) -> None:
    await api.ok("post", "/api/v1/namespaces/default/pods", pod("a", "node-1", app="web"))
    await api.ok("post", "/api/v1/namespaces/default/pods", pod("b", "node-2", app="web"))
    await api.ok(
        "post", "/api/v1/namespaces/kube-system/pods", pod("c", "node-1", "kube-system", app="proxy")
    )

    async def names(path: str, **params: str) -> list[str]:
        listed = await api.ok("get", path, **params)
        return [item["metadata"]["name"] for item in listed["items"]]

    assert await names("/api/v1/pods", fieldSelector="spec.nodeName=node-1") == ["a", "c"]
    assert await names("/api/v1/pods", fieldSelector="spec.nodeName=node-1,metadata.namespace!=default") == [
        "c"
    ]
    assert await names(
        "/api/v1/pods", labelSelector="app in (web)", fieldSelector="spec.nodeName==node-2"
    ) == ["b"]
    assert await names("/api/v1/namespaces/default/pods", fieldSelector="metadata.name=b") == ["b"]
    assert await names("/api/v1/pods", labelSelector="app notin (web)") == ["c"]


async def test_event_field_selectors(api: Api) -> None:
    for name, reason, target in [("e1", "StaleRealServerRemoved", "svc-a"), ("e2", "DryRun", "svc-b")]:
        event = {
            "metadata": {"name": name},
            "reason": reason,
            "involvedObject": {"kind": "Service", "namespace": "default", "name": target},
        }
        await api.ok("post", "/api/v1/namespaces/default/events", event)
    listed = await api.ok(
        "get", "/api/v1/events", fieldSelector="involvedObject.kind=Service,involvedObject.name=svc-a"
    )
    assert [item["reason"] for item in listed["items"]] == ["StaleRealServerRemoved"]
    listed = await api.ok("get", "/api/v1/namespaces/default/events", fieldSelector="reason=DryRun")
    assert [item["metadata"]["name"] for item in listed["items"]] == ["e2"]


async def test_unsupported_field_selector_is_400(api: Api) -> None:
    status, body = await api.call("get", "/api/v1/pods", fieldSelector="spec.hostname=x")
    assert status == 400
    assert body["reason"] == "BadRequest"
    assert "field label not supported" in body["message"]


async def test_malformed_label_selector_is_400(api: Api) -> None:
    status, _ = await api.call("get", "/api/v1/pods", labelSelector="a in b")
    assert status == 400


async def test_events_v1_field_selectors(api: Api) -> None:
    path = "/apis/events.k8s.io/v1/namespaces/default/events"
    for name, node in [("e1", "node-1"), ("e2", "node-2")]:
        event = {
            "metadata": {"name": name},
            "reason": "KubeProxySyncStale",
            "regarding": {"kind": "Node", "name": node},
        }
        await api.ok("post", path, event)
    listed = await api.ok("get", path, fieldSelector="regarding.kind=Node,regarding.name=node-2")
    assert [item["metadata"]["name"] for item in listed["items"]] == ["e2"]
