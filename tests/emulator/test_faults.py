from __future__ import annotations

import kmock
import pytest

from proxymedic.emulator.server import KubernetesApiEmulator
from tests.emulator.conftest import Api

pytestmark = pytest.mark.emulator

PODS = "/api/v1/namespaces/default/pods"


async def test_injected_error_takes_priority_over_the_store(
    emulator: KubernetesApiEmulator, api: Api
) -> None:
    emulator["get /api/v1/namespaces/default/pods"] << 500
    status, _ = await api.call("get", PODS)
    assert status == 500


async def test_one_shot_fault_then_the_store_answers(emulator: KubernetesApiEmulator, api: Api) -> None:
    emulator["post", kmock.resource("v1", "pods")][:1] << 409 << {"kind": "Status", "reason": "Conflict"}
    status, body = await api.call("post", PODS, {"metadata": {"name": "a"}})
    assert status == 409
    assert body["reason"] == "Conflict"
    created = await api.ok("post", PODS, {"metadata": {"name": "a"}})
    assert created["metadata"]["name"] == "a"


async def test_injected_watch_stream(emulator: KubernetesApiEmulator, api: Api) -> None:
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}
    emulator["watch", kmock.resource("v1", "pods")][:1] << (gone,)
    events = await api.watch(PODS)
    assert events == [gone]
    await api.ok("post", PODS, {"metadata": {"name": "a"}})
    events = await api.watch(PODS, count=1)
    assert events[0]["type"] == "ADDED"


async def test_requests_are_recorded_for_assertions(emulator: KubernetesApiEmulator, api: Api) -> None:
    await api.ok("post", PODS, {"metadata": {"name": "a"}})
    await api.ok(
        "patch",
        f"{PODS}/a",
        {"metadata": {"labels": {"x": "y"}}},
        content_type="application/merge-patch+json",
    )
    patches = list(emulator["patch", kmock.resource("v1", "pods")])
    assert len(patches) == 1
    assert patches[0].data == {"metadata": {"labels": {"x": "y"}}}


async def test_requests_can_be_forgotten_for_long_runs(emulator: KubernetesApiEmulator, api: Api) -> None:
    await api.ok("get", PODS)
    assert len(list(emulator)) == 1
    emulator.forget_requests()
    assert list(emulator) == []
    emulator.keep_requests = False
    await api.ok("get", PODS)
    await api.ok("get", PODS)
    assert len(list(emulator)) <= 1
