from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from proxymedic.emulator.server import KubernetesApiEmulator
from proxymedic.sim.waiting import until
from tests.emulator.conftest import Api

pytestmark = pytest.mark.emulator

PODS = "/api/v1/namespaces/default/pods"
MERGE = {"content_type": "application/merge-patch+json"}


def pod(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "spec": {"nodeName": "node-1"}}


async def _watch_open(emulator: KubernetesApiEmulator) -> None:
    """Wait until the emulator serves a watch: what happens next is streamed, not listed."""
    async with asyncio.timeout(30):
        await until(lambda: emulator.store.watch_count > 0, interval=0.01)


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(event["type"], event["object"]["metadata"].get("name")) for event in events]


@pytest.mark.parametrize("version", [None, "", "0"], ids=["absent", "empty", "zero"])
async def test_watch_without_version_starts_with_current_state(api: Api, version: str | None) -> None:
    await api.ok("post", PODS, pod("a"))
    await api.ok("post", PODS, pod("b"))
    if version is None:
        events = await api.watch(PODS, count=2)
    else:
        events = await api.watch(PODS, count=2, resourceVersion=version)
    assert summary(events) == [("ADDED", "a"), ("ADDED", "b")]


async def test_watch_from_version_replays_later_events_then_streams_live(api: Api) -> None:
    await api.ok("post", PODS, pod("a"))
    listed = await api.ok("get", PODS)
    await api.ok("patch", f"{PODS}/a", {"metadata": {"labels": {"x": "1"}}}, **MERGE)

    async def later() -> None:
        await asyncio.sleep(0.05)
        await api.ok("delete", f"{PODS}/a")

    task = asyncio.create_task(later())
    events = await api.watch(PODS, count=2, resourceVersion=listed["metadata"]["resourceVersion"])
    await task
    assert summary(events) == [("MODIFIED", "a"), ("DELETED", "a")]
    versions = [int(event["object"]["metadata"]["resourceVersion"]) for event in events]
    assert versions == sorted(versions)


async def test_watch_from_a_version_older_than_history_gets_410(
    api: Api, emulator: KubernetesApiEmulator
) -> None:
    first = await api.ok("post", PODS, pod("a"))
    for index in range(emulator.history_size + 1):
        await api.ok("patch", f"{PODS}/a", {"metadata": {"labels": {"n": str(index)}}}, **MERGE)
    events = await api.watch(PODS, resourceVersion=first["metadata"]["resourceVersion"])
    assert len(events) == 1
    assert events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert status["kind"] == "Status"
    assert status["code"] == 410
    assert status["reason"] == "Expired"
    assert status["message"].startswith("too old resource version")


async def test_compact_history_forces_410(api: Api, emulator: KubernetesApiEmulator) -> None:
    first = await api.ok("post", PODS, pod("a"))
    second = await api.ok("post", PODS, pod("b"))
    emulator.compact_history()
    events = await api.watch(PODS, resourceVersion=first["metadata"]["resourceVersion"])
    assert [event["type"] for event in events] == ["ERROR"]
    # Resuming from the latest version is still fine: nothing was missed.
    await api.ok("post", PODS, pod("c"))
    events = await api.watch(PODS, count=1, resourceVersion=second["metadata"]["resourceVersion"])
    assert summary(events) == [("ADDED", "c")]


async def test_bookmarks_are_sent_when_allowed(api: Api) -> None:
    created = await api.ok("post", PODS, pod("a"))
    events = await api.watch(
        PODS, count=2, resourceVersion=created["metadata"]["resourceVersion"], allowWatchBookmarks="true"
    )
    assert [event["type"] for event in events] == ["BOOKMARK", "BOOKMARK"]
    assert events[0]["object"]["kind"] == "Pod"
    assert events[0]["object"]["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_no_bookmarks_unless_asked(api: Api) -> None:
    created = await api.ok("post", PODS, pod("a"))
    events = await api.watch(
        PODS, resourceVersion=created["metadata"]["resourceVersion"], timeoutSeconds="0.5"
    )
    assert events == []


async def test_timeout_seconds_closes_the_stream(api: Api) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    events = await api.watch(PODS, timeoutSeconds="0.3")
    assert events == []
    assert loop.time() - started >= 0.25  # closed by the timeout (a hang is the test's own timeout)


async def test_watch_applies_selectors_with_transitions(api: Api, emulator: KubernetesApiEmulator) -> None:
    await api.ok("post", PODS, pod("a", app="web"))
    await api.ok("post", PODS, pod("b", app="db"))

    async def changes() -> None:
        await _watch_open(emulator)  # the changes come after the watch's initial state
        await api.ok("patch", f"{PODS}/b", {"metadata": {"labels": {"app": "web"}}}, **MERGE)  # enters
        await api.ok("patch", f"{PODS}/a", {"spec": {"nodeName": "node-2"}}, **MERGE)  # stays
        await api.ok("patch", f"{PODS}/a", {"metadata": {"labels": {"app": "db"}}}, **MERGE)  # leaves
        await api.ok("post", PODS, pod("c", app="db"))  # never seen

    task = asyncio.create_task(changes())
    events = await api.watch(PODS, count=4, labelSelector="app=web")
    await task
    assert summary(events) == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "a")]


async def test_watch_with_field_selector(api: Api) -> None:
    await api.ok("post", PODS, pod("a"))
    other = pod("b")
    other["spec"] = {"nodeName": "node-2"}
    await api.ok("post", PODS, other)
    events = await api.watch("/api/v1/pods", count=1, fieldSelector="spec.nodeName=node-2")
    assert summary(events) == [("ADDED", "b")]


async def test_watch_is_per_namespace(api: Api) -> None:
    await api.ok("post", "/api/v1/namespaces/other/pods", pod("x"))
    await api.ok("post", PODS, pod("a"))
    events = await api.watch(PODS, count=1)
    assert summary(events) == [("ADDED", "a")]


async def test_drop_watches_ends_open_streams(api: Api, emulator: KubernetesApiEmulator) -> None:
    async def drop() -> None:
        await _watch_open(emulator)
        emulator.drop_watches()

    task = asyncio.create_task(drop())
    events = await api.watch(PODS)
    await task
    assert events == []
    assert emulator.store.watch_count == 0


async def test_finalized_deletion_is_watched_as_modified_then_deleted(api: Api) -> None:
    body = pod("a")
    body["metadata"]["finalizers"] = ["x"]
    created = await api.ok("post", PODS, body)
    await api.ok("delete", f"{PODS}/a")
    await api.ok("patch", f"{PODS}/a", {"metadata": {"finalizers": []}}, **MERGE)
    events = await api.watch(PODS, count=3, resourceVersion=created["metadata"]["resourceVersion"])
    assert summary(events) == [("MODIFIED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    assert events[0]["object"]["metadata"]["deletionTimestamp"]


async def test_invalid_resource_version_is_400(api: Api) -> None:
    status, _ = await api.call("get", PODS, watch="true", resourceVersion="abc")
    assert status == 400


async def test_stream_is_json_lines(emulator: KubernetesApiEmulator, api: Api) -> None:
    await api.ok("post", PODS, pod("a"))
    async with emulator.get(PODS, params={"watch": "1", "timeoutSeconds": "0.2"}) as resp:
        body = await resp.read()
    lines = body.decode().strip().split("\n")
    assert [json.loads(line)["type"] for line in lines] == ["ADDED"]
