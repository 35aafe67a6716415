from __future__ import annotations

import pytest

from tests.emulator import crds
from tests.emulator.conftest import Api

pytestmark = pytest.mark.emulator

PROBES = f"/apis/{crds.API_VERSION}/{crds.PLURAL}"
PODS = "/api/v1/namespaces/default/pods"
MERGE = {"content_type": "application/merge-patch+json"}


async def test_create_ignores_status_with_the_subresource(api: Api) -> None:
    created = await api.ok("post", PROBES, dict(crds.probe("p"), status={"phase": "Forged"}))
    assert "status" not in created


async def test_main_endpoint_ignores_status_changes(api: Api) -> None:
    await api.ok("post", PROBES, crds.probe("p"))
    await api.ok("patch", f"{PROBES}/p/status", {"status": {"phase": "Ready"}}, **MERGE)
    patched = await api.ok(
        "patch", f"{PROBES}/p", {"spec": {"replicas": 3}, "status": {"phase": "X"}}, **MERGE
    )
    assert patched["status"] == {"phase": "Ready"}
    assert patched["spec"]["replicas"] == 3
    replaced = await api.ok("put", f"{PROBES}/p", dict(patched, status={"phase": "Y"}))
    assert replaced["status"] == {"phase": "Ready"}


async def test_status_endpoint_changes_only_status_and_keeps_generation(api: Api) -> None:
    created = await api.ok("post", PROBES, crds.probe("p"))
    body = {"spec": {"replicas": 5}, "metadata": {"labels": {"a": "b"}}, "status": {"phase": "Ready"}}
    patched = await api.ok("patch", f"{PROBES}/p/status", body, **MERGE)
    assert patched["status"] == {"phase": "Ready"}
    assert patched["spec"] == created["spec"]
    assert "labels" not in patched["metadata"]
    assert patched["metadata"]["generation"] == 1
    assert patched["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]
    replaced = await api.ok("put", f"{PROBES}/p/status", dict(patched, status={"phase": "Done"}))
    assert replaced["status"] == {"phase": "Done"}
    assert replaced["metadata"]["generation"] == 1


async def test_spec_change_bumps_generation(api: Api) -> None:
    await api.ok("post", PROBES, crds.probe("p"))
    patched = await api.ok("patch", f"{PROBES}/p", {"spec": {"replicas": 2}}, **MERGE)
    assert patched["metadata"]["generation"] == 2


async def test_core_kinds_keep_status_in_the_main_object(api: Api) -> None:
    pod = {"metadata": {"name": "a"}, "spec": {"nodeName": "n"}, "status": {"phase": "Pending"}}
    created = await api.ok("post", PODS, pod)
    assert created["status"] == {"phase": "Pending"}
    patched = await api.ok("patch", f"{PODS}/a", {"status": {"phase": "Running"}}, **MERGE)
    assert patched["status"] == {"phase": "Running"}
    via_status = await api.ok(
        "patch", f"{PODS}/a/status", {"status": {"podIP": "10.1.0.5"}, "spec": {"nodeName": "m"}}, **MERGE
    )
    assert via_status["status"] == {"phase": "Running", "podIP": "10.1.0.5"}
    assert via_status["spec"] == {"nodeName": "n"}
