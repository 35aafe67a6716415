"""Read what the runbook needs from the API server, and turn API failures into one-line errors.

Reads only (list and get): policies, node reports, intents, Nodes, the operator's Events, and
the Services the policies select with their EndpointSlices.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

from proxymedic.kube.client import ApiError, JsonObject, KubeClient
from proxymedic.kube.resources import (
    ENDPOINT_SLICES,
    EVENTS,
    INTENTS,
    NODE_HEALTHS,
    NODES,
    POLICIES,
    SERVICES,
    Resource,
)
from proxymedic.operator.backends import SERVICE_NAME_LABEL, ServiceRef, parse_service
from proxymedic.operator.planner import policy_covers
from proxymedic.runbook.errors import ClusterAccessError, CrdsMissingError, ForbiddenError, UnreachableError
from proxymedic.runbook.snapshot import OPERATOR_COMPONENT, Snapshot, build_view

T = TypeVar("T")
CRD_INSTALL = "kubectl apply --server-side -f charts/proxymedic/crds/ (or install the Helm chart)"


def _what(resource: Resource) -> str:
    return f"{resource.plural}.{resource.group}" if resource.group else resource.plural


async def _call(resource: Resource, verb: str, call: Callable[[], Awaitable[T]], server: str) -> T:
    try:
        return await call()
    except ApiError as exc:
        # A bare error status (no Status body) leaves the client no message but "None".
        detail = exc.message if exc.message not in ("", "None") else f"{exc.status} {exc.reason}"
        if exc.status == 404 and resource.group == POLICIES.group:
            raise CrdsMissingError(
                f"the ProxyMedic CRDs are not installed in this cluster ({_what(resource)} not found): "
                f"{CRD_INSTALL}"
            ) from None
        if exc.status == 403:
            raise ForbiddenError(
                f"not allowed to {verb} {_what(resource)}: {detail} (needs get and list on ProxyMedic's "
                "kinds, nodes, services, endpointslices and events)"
            ) from None
        if exc.status == 401:
            raise ClusterAccessError(f"the API server rejected the credentials: {detail}") from None
        raise ClusterAccessError(f"cannot {verb} {_what(resource)}: {exc}") from None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise UnreachableError(
            f"cannot reach the API server at {server}: {exc or type(exc).__name__}"
        ) from None


async def fetch_snapshot(client: KubeClient, server: str) -> Snapshot:
    """Everything ``status`` and ``diagnose`` read; selected Services get their EndpointSlices."""

    async def listing(
        resource: Resource,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[JsonObject]:
        items, _ = await _call(
            resource,
            "list",
            lambda: client.list(
                resource, namespace, label_selector=label_selector, field_selector=field_selector
            ),
            server,
        )
        return items

    # The policies first: a cluster without the CRDs answers this with 404, the clearest error.
    policies = await listing(POLICIES)
    healths, intents, nodes, events, services = await asyncio.gather(
        listing(NODE_HEALTHS),
        listing(INTENTS),
        listing(NODES),
        listing(EVENTS, field_selector=f"reportingComponent={OPERATOR_COMPONENT}"),
        listing(SERVICES),
    )
    snapshot = Snapshot(policies, healths, intents, nodes, events, services)
    valid = [record.policy for record in build_view(snapshot).policies if record.policy is not None]
    selected: list[ServiceRef] = []
    for raw in services:
        info = parse_service(raw)
        if info is not None and any(policy_covers(policy, info) for policy in valid):
            selected.append(info.ref)

    async def slices_of(ref: ServiceRef) -> list[JsonObject]:
        selector = f"{SERVICE_NAME_LABEL}={ref.name}"
        return await listing(ENDPOINT_SLICES, namespace=ref.namespace, label_selector=selector)

    slices = await asyncio.gather(*(slices_of(ref) for ref in selected))
    snapshot.slices = [item for items in slices for item in items]
    return snapshot
