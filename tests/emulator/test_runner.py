from __future__ import annotations

import json
import pathlib
import urllib.request

import kubernetes.client
import kubernetes.config
import pytest

from proxymedic.emulator.connection import kubernetes_configuration, write_kubeconfig
from proxymedic.emulator.runner import EmulatorThread, serve
from tests.emulator import crds

pytestmark = pytest.mark.emulator


def test_thread_serves_real_http_and_stops() -> None:
    with EmulatorThread() as api:
        assert api.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{api.url}/api/v1/namespaces") as response:
            body = json.load(response)
        assert body["kind"] == "NamespaceList"
        api.call(api.emulator.register_crd, crds.probe_crd())
        spec = api.call(api.emulator.spec, crds.API_VERSION, crds.PLURAL)
        created = api.call(api.emulator.store.create, spec, None, crds.probe("p"))
        assert created["spec"]["replicas"] == 1
    with pytest.raises(RuntimeError):
        _ = api.url


def test_discovery_names_the_core_group_version_as_a_real_api_server_does() -> None:
    """kubectl leaves out a core group named "/v1", and then reads events.k8s.io for `get events`."""
    with EmulatorThread() as api:
        with urllib.request.urlopen(f"{api.url}/api/v1") as response:
            core = json.load(response)
        with urllib.request.urlopen(f"{api.url}/apis/events.k8s.io/v1") as response:
            events = json.load(response)
    assert core["groupVersion"] == "v1"
    assert "events" in {resource["name"] for resource in core["resources"]}
    assert events["groupVersion"] == "events.k8s.io/v1"


def test_kubernetes_client_configuration_and_kubeconfig(tmp_path: pathlib.Path) -> None:
    with EmulatorThread() as api:
        with kubernetes.client.ApiClient(kubernetes_configuration(api.url)) as client:
            core = kubernetes.client.CoreV1Api(client)
            metadata = kubernetes.client.V1ObjectMeta(name="node-1", labels={"role": "worker"})
            created = core.create_node(kubernetes.client.V1Node(metadata=metadata))
            nodes = core.list_node(label_selector="role=worker")
            assert [node.metadata and node.metadata.name for node in nodes.items] == ["node-1"]
            assert nodes.metadata is not None
            assert created.metadata is not None
            assert nodes.metadata.resource_version == created.metadata.resource_version

        path = write_kubeconfig(api.url, tmp_path / "kubeconfig")
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(path),
            client_configuration=configuration,
        )
        assert configuration.host == api.url
        with kubernetes.client.ApiClient(configuration) as client:
            namespaces = kubernetes.client.CoreV1Api(client).list_namespace()
            assert namespaces.items == []


async def test_async_serve_gives_a_url() -> None:
    async with serve() as emulator:
        async with emulator.get("/api/v1/pods") as response:
            assert response.status == 200
        assert str(emulator.url).startswith("http://127.0.0.1:")
