"""EndpointSlices as the operator holds them between events: compact, one record per slice.

The operator keeps what kube-proxy reads of every EndpointSlice of the cluster (``SliceSpec``),
but needs it only for the Services a policy selects, when it rebuilds a selection. One
``EndpointSpec`` per endpoint (an object and its attribute values: about 160 bytes) was the
largest part of its memory at 100,000 endpoints; a ``HeldSlice`` keeps the same fields in a few
tuples per slice and gives the ``SliceSpec`` back on demand, kept until the slice changes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from proxymedic.expectation import SliceSpec
from proxymedic.expectation.model import EndpointSpec, Family, SlicePortSpec
from proxymedic.operator.backends import share

_READY, _SERVING, _TERMINATING = 1, 2, 4
_NO_NAMES: frozenset[str] = frozenset()
"""Shared: CPython makes each empty frozenset anew (216 bytes), and most endpoints have no hints."""


@dataclass(slots=True, eq=False)
class HeldSlice:
    namespace: str
    service: str
    name: str
    family: Family
    ports: tuple[SlicePortSpec, ...]
    addresses: tuple[str, ...]
    flags: bytes
    """Per endpoint: ready, serving, terminating bits."""
    nodes: tuple[str | None, ...] | None
    """Per endpoint: its node's name (interned); None when no endpoint names one."""
    hints: tuple[tuple[frozenset[str], frozenset[str]], ...] | None
    """Per endpoint: its zone and node hints; None when no endpoint has any."""
    _spec: SliceSpec | None = field(default=None, repr=False)

    @classmethod
    def of(cls, spec: SliceSpec, namespace: str) -> HeldSlice:
        endpoints = spec.endpoints
        nodes = tuple(sys.intern(e.node_name) if e.node_name else None for e in endpoints)
        hints = tuple((e.zone_hints or _NO_NAMES, e.node_hints or _NO_NAMES) for e in endpoints)
        return cls(
            namespace=namespace,
            service=spec.service,
            name=spec.name,
            family=spec.family,
            ports=share(spec.ports),  # the very tuple the SliceState of the same object has
            addresses=tuple(e.address for e in endpoints),
            flags=bytes(_flags(e) for e in endpoints),
            nodes=nodes if any(nodes) else None,
            hints=hints if any(zone or node for zone, node in hints) else None,
        )

    @property
    def service_key(self) -> tuple[str, str]:
        return (self.namespace, self.service)

    def spec(self) -> SliceSpec:
        """The slice as the expectation reads it; built at the first call, then kept."""
        if self._spec is None:
            self._spec = SliceSpec(
                namespace=self.namespace,
                service=self.service,
                name=self.name,
                family=self.family,
                ports=self.ports,
                endpoints=tuple(self._endpoint(i) for i in range(len(self.addresses))),
            )
        return self._spec

    def _endpoint(self, i: int) -> EndpointSpec:
        flags = self.flags[i]
        zone, node = self.hints[i] if self.hints is not None else (_NO_NAMES, _NO_NAMES)
        return EndpointSpec(
            address=self.addresses[i],
            node_name=self.nodes[i] if self.nodes is not None else None,
            ready=bool(flags & _READY),
            serving=bool(flags & _SERVING),
            terminating=bool(flags & _TERMINATING),
            zone_hints=zone,
            node_hints=node,
        )


def _flags(endpoint: EndpointSpec) -> int:
    return (
        (_READY if endpoint.ready else 0)
        | (_SERVING if endpoint.serving else 0)
        | (_TERMINATING if endpoint.terminating else 0)
    )
