"""The API resources ProxyMedic reads and writes, and their URLs."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from proxymedic.api.meta import GROUP, VERSION


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
            if subresource is not None:
                base += f"/{subresource}"
        return base


SERVICES = Resource("", "v1", "services", namespaced=True)
PODS = Resource("", "v1", "pods", namespaced=True)
NODES = Resource("", "v1", "nodes", namespaced=False)
EVENTS = Resource("", "v1", "events", namespaced=True)
CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", namespaced=False)
ENDPOINT_SLICES = Resource("discovery.k8s.io", "v1", "endpointslices", namespaced=True)
POLICIES = Resource(GROUP, VERSION, "proxyhealthpolicies", namespaced=False)
INTENTS = Resource(GROUP, VERSION, "remediationintents", namespaced=False)
NODE_HEALTHS = Resource(GROUP, VERSION, "nodeproxyhealths", namespaced=False)
