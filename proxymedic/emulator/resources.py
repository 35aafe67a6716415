"""The resource registry: which kinds the emulator serves, and how.

Built-in core kinds are declared here; custom resources come from
apiextensions.k8s.io/v1 CustomResourceDefinition manifests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

JsonDict = dict[str, Any]

ALL_VERBS = frozenset({"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"})

# Field selectors every kind supports.
COMMON_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


@dataclasses.dataclass(frozen=True)
class ResourceSpec:
    """One served group/version/plural with the traits the API server needs to serve it."""

    group: str
    version: str
    plural: str
    kind: str
    singular: str
    namespaced: bool
    verbs: frozenset[str] = ALL_VERBS
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # With the subresource, the main endpoint ignores .status and /status changes only .status.
    status_subresource: bool = False
    # Built-in kinds accept a PUT without metadata.resourceVersion; custom resources do not.
    unconditional_update: bool = True
    # Fields usable in fieldSelector beyond metadata.name and metadata.namespace.
    selectable_fields: frozenset[str] = frozenset()
    # The openAPIV3Schema of a custom resource version; None for built-in kinds (not validated).
    schema: Mapping[str, Any] | None = dataclasses.field(default=None, compare=False, hash=False)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.group, self.version, self.plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """The name the real server uses in error messages: ``pods`` or ``leases.coordination.k8s.io``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def group_kind(self) -> str:
        """``Pod`` or ``ProxyHealthPolicy.proxymedic.io``, as in the server's "is invalid" messages."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def field_labels(self) -> frozenset[str]:
        return COMMON_FIELDS | self.selectable_fields


_EVENT_FIELDS = frozenset(
    {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    }
)
_EVENTS_V1_FIELDS = frozenset(
    {
        "regarding.kind",
        "regarding.namespace",
        "regarding.name",
        "regarding.uid",
        "regarding.apiVersion",
        "regarding.resourceVersion",
        "regarding.fieldPath",
        "reason",
        "reportingController",
        "type",
    }
)

# Core kinds keep .status in the main object (no status subresource semantics), so tests can
# create a Pod or Node with its status in one request; /status still works for them.
BUILTIN_RESOURCES: tuple[ResourceSpec, ...] = (
    ResourceSpec(
        "",
        "v1",
        "namespaces",
        "Namespace",
        "namespace",
        namespaced=False,
        short_names=("ns",),
        selectable_fields=frozenset({"status.phase"}),
    ),
    ResourceSpec(
        "",
        "v1",
        "nodes",
        "Node",
        "node",
        namespaced=False,
        short_names=("no",),
        selectable_fields=frozenset({"spec.unschedulable"}),
    ),
    ResourceSpec(
        "",
        "v1",
        "pods",
        "Pod",
        "pod",
        namespaced=True,
        short_names=("po",),
        categories=("all",),
        selectable_fields=frozenset(
            {
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            }
        ),
    ),
    ResourceSpec(
        "", "v1", "services", "Service", "service", namespaced=True, short_names=("svc",), categories=("all",)
    ),
    ResourceSpec(
        "",
        "v1",
        "events",
        "Event",
        "event",
        namespaced=True,
        short_names=("ev",),
        selectable_fields=_EVENT_FIELDS,
    ),
    ResourceSpec(
        "discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", "endpointslice", namespaced=True
    ),
    ResourceSpec("coordination.k8s.io", "v1", "leases", "Lease", "lease", namespaced=True),
    ResourceSpec(
        "events.k8s.io",
        "v1",
        "events",
        "Event",
        "event",
        namespaced=True,
        short_names=("ev",),
        selectable_fields=_EVENTS_V1_FIELDS,
    ),
)


# CRDs posted over HTTP are stored like any object and also start serving their resources.
CRD_RESOURCE = ResourceSpec(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    "CustomResourceDefinition",
    "customresourcedefinition",
    namespaced=False,
    short_names=("crd", "crds"),
    status_subresource=True,
)


class InvalidDefinitionError(ValueError):
    """A CustomResourceDefinition manifest the emulator cannot serve."""


def specs_from_crd(crd: Mapping[str, Any]) -> list[ResourceSpec]:
    """One ResourceSpec per served version of an apiextensions.k8s.io/v1 CRD manifest."""
    if crd.get("apiVersion") != "apiextensions.k8s.io/v1" or crd.get("kind") != "CustomResourceDefinition":
        raise InvalidDefinitionError("expected an apiextensions.k8s.io/v1 CustomResourceDefinition")
    try:
        return _specs_from_crd(crd)
    except (KeyError, TypeError, AttributeError) as exc:
        raise InvalidDefinitionError(f"malformed CustomResourceDefinition: missing or wrong {exc}") from exc


def _specs_from_crd(crd: Mapping[str, Any]) -> list[ResourceSpec]:
    spec = crd["spec"]
    names = spec["names"]
    group = spec["group"]
    plural = names["plural"]
    if crd.get("metadata", {}).get("name") not in (None, f"{plural}.{group}"):
        raise InvalidDefinitionError(f"metadata.name must be {plural}.{group}")
    result: list[ResourceSpec] = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        schema = version.get("schema", {}).get("openAPIV3Schema")
        selectable = frozenset(
            str(item["jsonPath"]).lstrip(".") for item in version.get("selectableFields", [])
        )
        result.append(
            ResourceSpec(
                group=group,
                version=version["name"],
                plural=plural,
                kind=names["kind"],
                singular=names.get("singular", names["kind"].lower()),
                namespaced=spec["scope"] == "Namespaced",
                short_names=tuple(names.get("shortNames", ())),
                categories=tuple(names.get("categories", ())),
                status_subresource="status" in version.get("subresources", {}),
                unconditional_update=False,
                selectable_fields=selectable,
                schema=schema,
            )
        )
    return result


def _peering_crd(plural: str, kind: str, scope: str) -> JsonDict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kopf.dev"},
        "spec": {
            "scope": scope,
            "group": "kopf.dev",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            },
                        }
                    },
                }
            ],
        },
    }


def kopf_peering_crds() -> list[JsonDict]:
    """Kopf's own peering CRDs (as in Kopf's docs/deployment), so that Kopf peering works."""
    return [
        _peering_crd("clusterkopfpeerings", "ClusterKopfPeering", "Cluster"),
        _peering_crd("kopfpeerings", "KopfPeering", "Namespaced"),
    ]


def find_spec(specs: Iterable[ResourceSpec], group: str, version: str, plural: str) -> ResourceSpec | None:
    for spec in specs:
        if spec.key == (group, version, plural):
            return spec
    return None
