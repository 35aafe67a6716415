from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import kopf
import kubernetes.client
import pytest
from kopf.testing import KopfRunner

from proxymedic.emulator.connection import kubernetes_configuration
from proxymedic.emulator.resources import kopf_peering_crds
from proxymedic.emulator.runner import EmulatorThread
from tests.emulator import crds
from tests.emulator.smoke_operator import Observed, Target, build_registry

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(30)]

KOPF_PREFIX = "kopf.zalando.org/"


def wait_for(condition: Callable[[], Any], timeout: float = 25.0) -> Any:
    """Poll until ``condition`` returns something true; ``timeout`` bounds a hang, not a speed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    raise AssertionError("the condition was not met in time")


@pytest.fixture
def api_thread() -> Iterator[EmulatorThread]:
    with EmulatorThread(bookmark_interval=1.0) as thread:
        thread.call(thread.emulator.register_crd, crds.probe_crd())
        for crd in kopf_peering_crds():
            thread.call(thread.emulator.register_crd, crd)
        yield thread


def test_kopf_operator_runs_against_the_emulator(api_thread: EmulatorThread) -> None:
    observed = Observed()
    registry = build_registry(api_thread.url, Target(crds.GROUP, crds.VERSION, crds.PLURAL), observed)
    with kubernetes.client.ApiClient(kubernetes_configuration(api_thread.url)) as client:
        core = kubernetes.client.CoreV1Api(client)
        custom = kubernetes.client.CustomObjectsApi(client)
        core.create_namespaced_pod(
            "default",
            kubernetes.client.V1Pod(
                metadata=kubernetes.client.V1ObjectMeta(name="pod-1"),
                spec=kubernetes.client.V1PodSpec(
                    node_name="node-1",
                    containers=[kubernetes.client.V1Container(name="main", image="pause")],
                ),
            ),
        )
        custom.create_cluster_custom_object(
            "kopf.dev",
            "v1",
            "clusterkopfpeerings",
            {
                "apiVersion": "kopf.dev/v1",
                "kind": "ClusterKopfPeering",
                "metadata": {"name": "default"},
            },
        )

        def probe() -> dict[str, Any]:
            result = custom.get_cluster_custom_object(crds.GROUP, crds.VERSION, crds.PLURAL, "p1")
            return cast(dict[str, Any], result)

        with KopfRunner(
            ["run", "-A", "--verbose"], registry=registry, settings=kopf.OperatorSettings(), timeout=15
        ) as runner:
            custom.create_cluster_custom_object(crds.GROUP, crds.VERSION, crds.PLURAL, crds.probe("p1"))
            wait_for(lambda: probe().get("status", {}).get("phase") == "Ready")
            assert probe()["status"]["created"] == {"replicas": 1}
            wait_for(lambda: "pod-1" in observed.pods_seen())

            custom.patch_cluster_custom_object(
                crds.GROUP, crds.VERSION, crds.PLURAL, "p1", {"spec": {"replicas": 3}}
            )
            wait_for(lambda: probe()["status"].get("phase") == "Scaled to 3")

            # Kopf posts events in the background; the field selector is what `kubectl describe` uses.
            events = wait_for(
                lambda: (
                    core.list_event_for_all_namespaces(
                        field_selector=f"involvedObject.name=p1,involvedObject.kind={crds.KIND}"
                    ).items
                )
            )
            assert [(event.reason, event.message) for event in events] == [("Probed", "p1 is ready")]

            peering = custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", "default")
            assert cast(dict[str, Any], peering).get("status"), (
                "Kopf did not announce itself in the peering object"
            )

        assert runner.exit_code == 0
        exception: BaseException | None = runner.exception  # Kopf types it as never None
        assert exception is None

        spec = api_thread.call(api_thread.emulator.spec, crds.API_VERSION, crds.PLURAL)
        stored = api_thread.call(api_thread.emulator.store.get, spec, None, "p1")
        assert stored["status"]["phase"] == "Scaled to 3"
        assert stored["metadata"]["generation"] == 2  # the status patches did not bump it

        annotations = probe()["metadata"].get("annotations", {})
        assert f"{KOPF_PREFIX}last-handled-configuration" in annotations
        pod = core.read_namespaced_pod("pod-1", "default").metadata
        assert pod is not None
        assert not any(key.startswith(KOPF_PREFIX) for key in (pod.annotations or {}))
        assert not pod.finalizers
