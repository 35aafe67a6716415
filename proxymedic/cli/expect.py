"""``proxymedic expect NODE``: what kube-proxy should have programmed on a node, to compare with ipvsadm.

Reads Services, EndpointSlices and Nodes from manifest files (``-f``, multi-document YAML, ``kind:
List`` accepted) or from the cluster, and prints the virtual servers with their real servers.
Exit codes: 0, 1 for a file that cannot be read, 3 when the cluster cannot be read. Its options are
in ``options.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import aiohttp
import yaml

from proxymedic.expectation import NodeExpectation, ProxyOptions, expect_from_objects
from proxymedic.kube.client import ApiError, JsonObject, KubeClient
from proxymedic.kube.config import KubeconfigError, load_connection
from proxymedic.kube.resources import ENDPOINT_SLICES, NODES, SERVICES, Resource
from proxymedic.runbook.errors import ClusterAccessError, KubeconfigUnusableError, RunbookError


class ManifestError(RunbookError):
    """A manifest file that cannot be read or is not YAML."""


def _documents(path: Path) -> Iterator[JsonObject]:
    try:
        documents = list(yaml.safe_load_all(path.read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from None
    for document in documents:
        if isinstance(document, dict):
            yield document


async def _read_cluster(kubeconfig: str | None, context: str | None) -> list[JsonObject]:
    try:
        connection = load_connection(kubeconfig, context)
    except KubeconfigError as exc:
        raise KubeconfigUnusableError(str(exc)) from None
    except Exception as exc:  # the kubernetes client raises several kinds for a bad kubeconfig
        raise ClusterAccessError(f"cannot load the kubeconfig: {exc}") from None

    async def listing(client: KubeClient, resource: Resource, kind: str) -> list[JsonObject]:
        items, _ = await client.list(resource)
        return [{"kind": kind, **item} for item in items]  # list items carry no kind

    try:
        async with KubeClient(connection) as client:
            groups = await asyncio.gather(
                listing(client, SERVICES, "Service"),
                listing(client, ENDPOINT_SLICES, "EndpointSlice"),
                listing(client, NODES, "Node"),
            )
    except ApiError as exc:
        raise ClusterAccessError(f"cannot list from {connection.server}: {exc}") from None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise ClusterAccessError(f"cannot reach the API server at {connection.server}: {exc}") from None
    return [item for group in groups for item in group]


def render_text(expectation: NodeExpectation) -> str:
    """One block per virtual server, like ``ipvsadm -Ln``, with the Service it belongs to."""
    lines = [f"node {expectation.node}, kube-proxy mode {expectation.mode}"]
    if not expectation.virtual_servers:
        lines.append("no virtual servers")
    for vs in expectation.virtual_servers:
        address = f"[{vs.address}]" if ":" in vs.address else vs.address
        lines.append(f"{vs.protocol:<5}{address}:{vs.port}  {vs.kind} of {vs.service}")
        if not vs.real_servers:
            lines.append("  (no real servers)")
        for rs in vs.real_servers:
            rs_address = f"[{rs.address}]" if ":" in rs.address else rs.address
            lines.append(f"  -> {rs_address}:{rs.port}")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, prog: str, stream: TextIO | None = None) -> int:
    out = stream or sys.stdout
    try:
        if args.files:
            items = [document for path in args.files for document in _documents(path)]
        else:
            items = asyncio.run(_read_cluster(args.kubeconfig, args.context))
    except RunbookError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    addresses = tuple(args.node_addresses) if args.node_addresses else None
    expectation = expect_from_objects(
        items, args.node, ProxyOptions(node_port_addresses=addresses, mode=args.mode)
    )
    if args.output == "json":
        out.write(json.dumps(expectation.as_json(), indent=2) + "\n")
    else:
        out.write(render_text(expectation))
    return 0
