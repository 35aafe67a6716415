"""The expectation matrix (``tests/expectation``) on a real API server: applied, read back, removed.

Every case of the matrix shares no address with another, so all of them go in at once: the
namespace, the three Nodes and every case's Services and EndpointSlices. What a server writes
only through the status subresource (a Node's addresses, a load balancer's ingress) is patched
there afterwards, as a kubelet and a cloud controller would.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
from typing import Any

from proxymedic.cli.main import main
from tests.expectation.cases import CASES
from tests.expectation.manifests import NAMESPACE, NAMESPACE_MANIFEST, NODES, Manifest
from tests.realk8s.controlplane import ControlPlane


def manifests() -> list[Manifest]:
    """Every Service and EndpointSlice of the matrix, in the order the cases give them."""
    return [manifest for case in CASES for manifest in case.manifests]


def _plural(manifest: Manifest) -> str:
    return {"Service": "services", "EndpointSlice": "endpointslices", "Node": "nodes"}[manifest["kind"]]


def _collection(manifest: Manifest) -> str:
    group = "/api/v1" if manifest["apiVersion"] == "v1" else f"/apis/{manifest['apiVersion']}"
    namespace = manifest["metadata"].get("namespace")
    scope = f"/namespaces/{namespace}" if namespace else ""
    plural = "namespaces" if manifest["kind"] == "Namespace" else _plural(manifest)
    return f"{group}{scope}/{plural}"


def path_of(manifest: Manifest) -> str:
    return f"{_collection(manifest)}/{manifest['metadata']['name']}"


def create_or_replace(plane: ControlPlane, manifest: Manifest) -> None:
    """One request per object (kubectl would first read the API's discovery documents, which
    takes minutes on the cluster tier's emulated CPU)."""
    body = {k: v for k, v in manifest.items() if k != "status"}
    status, created = plane.request("POST", _collection(manifest), body)
    if status == 409:
        _, current = plane.request("GET", path_of(manifest))
        version = current["metadata"]["resourceVersion"]
        body = {**body, "metadata": {**body["metadata"], "resourceVersion": version}}
        status, created = plane.request("PUT", path_of(manifest), body)
    assert status in (200, 201), f"the server refused {path_of(manifest)}: {created}"


def _patch_status(plane: ControlPlane, manifest: Manifest) -> None:
    status, body = plane.request(
        "PATCH",
        f"{path_of(manifest)}/status",
        {"status": manifest["status"]},
        content_type="application/merge-patch+json",
    )
    assert status == 200, f"cannot write the status of {path_of(manifest)}: {body}"


def apply(plane: ControlPlane) -> list[Manifest]:
    """Create the matrix's namespace, Nodes, Services and EndpointSlices; returns what was applied."""
    objects = [NAMESPACE_MANIFEST, *NODES, *manifests()]
    for obj in objects:
        create_or_replace(plane, obj)
    for obj in objects:
        if "status" in obj:
            _patch_status(plane, obj)
    return objects


def remove(plane: ControlPlane) -> None:
    """Delete the matrix's Services, EndpointSlices and Nodes. The namespace stays: without a
    controller manager nothing would finish its deletion."""
    for obj in [*manifests(), *NODES]:
        status, body = plane.request("DELETE", path_of(obj))
        assert status in (200, 202, 404), f"cannot delete {path_of(obj)}: {body}"


def read_back(plane: ControlPlane) -> list[dict[str, Any]]:
    """The Services and EndpointSlices of the matrix's namespace and every Node, as the server has them."""
    items: list[dict[str, Any]] = []
    for kind, path in (
        ("Service", f"/api/v1/namespaces/{NAMESPACE}/services"),
        ("EndpointSlice", f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"),
        ("Node", "/api/v1/nodes"),
    ):
        status, body = plane.request("GET", path)
        assert status == 200, f"cannot list {path}: {body}"
        items.extend({"kind": kind, **item} for item in body["items"])
    return items


def expect_json(plane: ControlPlane, node: str, mode: str = "ipvs") -> dict[str, Any]:
    """``proxymedic expect NODE --mode MODE --kubeconfig ... -o json``, run as a user runs it (in
    a thread of its own, whose event loop it opens and closes)."""
    out = io.StringIO()

    def command() -> int:
        with contextlib.redirect_stdout(out):
            return main(["expect", node, "--mode", mode, "--kubeconfig", str(plane.kubeconfig), "-o", "json"])

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert pool.submit(command).result() == 0
    return dict(json.loads(out.getvalue()))
