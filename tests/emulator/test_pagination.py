"""Paged lists (``limit`` and ``continue``), as Kopf's chunked initial listing uses them."""

from __future__ import annotations

import pytest

from proxymedic.emulator.server import KubernetesApiEmulator
from tests.emulator.conftest import Api

pytestmark = pytest.mark.emulator

PODS = "/api/v1/pods"


async def _create_pods(api: Api, count: int) -> None:
    for i in range(count):
        ns = "a" if i % 2 else "b"
        body = {"metadata": {"name": f"pod-{i:02d}", "namespace": ns, "labels": {"even": str(i % 2 == 0)}}}
        await api.ok("post", f"/api/v1/namespaces/{ns}/pods", body)


def _names(page: dict[str, object]) -> list[str]:
    items = page["items"]
    assert isinstance(items, list)
    return [item["metadata"]["name"] for item in items]


async def test_pages_cover_every_object_once_in_order(api: Api) -> None:
    await _create_pods(api, 7)
    whole = await api.ok("get", PODS)
    pages: list[list[str]] = []
    first = await api.ok("get", PODS, limit="3")
    page = first
    while True:
        pages.append(_names(page))
        assert page["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        token = page["metadata"].get("continue")
        if not token:
            assert "remainingItemCount" not in page["metadata"]
            break
        await_remaining = page["metadata"]["remainingItemCount"]
        page = await api.ok("get", PODS, limit="3", **{"continue": token})
        assert len(_names(page)) == min(3, await_remaining)
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [name for p in pages for name in p] == _names(whole)
    assert first["metadata"]["remainingItemCount"] == 4


async def test_pages_apply_the_selector(api: Api) -> None:
    await _create_pods(api, 6)
    first = await api.ok("get", PODS, limit="2", labelSelector="even=True")
    rest = await api.ok(
        "get", PODS, limit="2", labelSelector="even=True", **{"continue": first["metadata"]["continue"]}
    )
    assert sorted(_names(first) + _names(rest)) == ["pod-00", "pod-02", "pod-04"]
    assert "continue" not in rest["metadata"]


async def test_a_limit_larger_than_the_list_gives_one_page(api: Api) -> None:
    await _create_pods(api, 2)
    page = await api.ok("get", PODS, limit="500")
    assert len(_names(page)) == 2
    assert "continue" not in page["metadata"]


async def test_a_change_between_pages_is_replayed_by_a_watch_from_the_lists_version(api: Api) -> None:
    await _create_pods(api, 4)
    first = await api.ok("get", PODS, limit="2")
    await api.ok("post", "/api/v1/namespaces/b/pods", {"metadata": {"name": "pod-99", "namespace": "b"}})
    rest = await api.ok("get", PODS, limit="10", **{"continue": first["metadata"]["continue"]})
    assert "pod-99" in _names(rest)  # later pages show the current state
    events = await api.watch(PODS, count=1, resourceVersion=first["metadata"]["resourceVersion"])
    assert (events[0]["type"], events[0]["object"]["metadata"]["name"]) == ("ADDED", "pod-99")


async def test_an_expired_continue_token_gets_410(api: Api, emulator: KubernetesApiEmulator) -> None:
    await _create_pods(api, 3)
    first = await api.ok("get", PODS, limit="1")
    await api.ok("post", "/api/v1/namespaces/a/pods", {"metadata": {"name": "later", "namespace": "a"}})
    emulator.compact_history()
    status, body = await api.call("get", PODS, limit="1", **{"continue": first["metadata"]["continue"]})
    assert (status, body["reason"]) == (410, "Expired")
    assert "continue parameter is too old" in body["message"]


@pytest.mark.parametrize(
    ("params", "message"), [({"limit": "x"}, "invalid limit"), ({"continue": "%%%"}, "invalid continue")]
)
async def test_bad_paging_parameters_get_400(api: Api, params: dict[str, str], message: str) -> None:
    status, body = await api.call("get", PODS, **params)
    assert status == 400
    assert message in body["message"]
