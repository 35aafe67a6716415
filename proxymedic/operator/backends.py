"""Which backends kube-proxy uses for a Service, derived from its EndpointSlices (pure functions).

kube-proxy programs the ready endpoints of a Service; only when none is ready does it fall
back to the endpoints that are terminating but still serving. A backend is gone from the
dataplane exactly when it leaves that set: it left every slice, or it stopped being ready
while others are. That is the moment to flush it, while a gracefully terminating pod still
answers.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from proxymedic.expectation.model import SlicePortSpec as SlicePort
from proxymedic.expectation.model import canonical_ip

SERVICE_NAME_LABEL = "kubernetes.io/service-name"

_H = TypeVar("_H", bound=Hashable)
_SHARED: dict[Any, Any] = {}
_SHARED_MAX = 4096


def share(value: _H) -> _H:
    """One object for equal immutable values (the port lists most Services and slices repeat):
    a bounded table, emptied when full."""
    if len(_SHARED) >= _SHARED_MAX:
        _SHARED.clear()
    return _SHARED.setdefault(value, value)  # type: ignore[no-any-return]


@dataclass(frozen=True, order=True)
class ServiceRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class SliceState:
    """What one EndpointSlice contributes: its ready and its serving-but-terminating addresses."""

    ready: frozenset[str] = frozenset()
    serving_terminating: frozenset[str] = frozenset()
    ports: tuple[SlicePort, ...] = ()


def _canonical(address: Any) -> str | None:
    """The address in canonical form, None if it is not one (surrounding blanks included).

    Through the expectation's cache: the SliceSpec parsed from the same object right after gets
    the very same string, and the operator holds one copy of each address, not two.
    """
    text = str(address)
    return canonical_ip(text) if text == text.strip() else None


_NONE: frozenset[str] = frozenset()


def _frozen(addresses: set[str]) -> frozenset[str]:
    """Python makes each empty frozenset anew (216 bytes): most slices have no terminating
    endpoint, and an empty set is shared instead."""
    return frozenset(addresses) if addresses else _NONE


def parse_slice(obj: Mapping[str, Any]) -> tuple[ServiceRef, str, SliceState] | None:
    """The Service, slice name and state of an EndpointSlice; None for slices kube-proxy ignores."""
    meta = obj.get("metadata") or {}
    service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not service or obj.get("addressType") not in ("IPv4", "IPv6"):
        return None
    ready: set[str] = set()
    serving_terminating: set[str] = set()
    for endpoint in obj.get("endpoints") or []:
        addresses = endpoint.get("addresses") or []
        address = _canonical(addresses[0]) if addresses else None
        if address is None:
            continue
        conditions = endpoint.get("conditions") or {}
        # Absent conditions mean ready and serving (discovery.k8s.io/v1 semantics).
        is_ready = conditions.get("ready") is not False
        serving = conditions.get("serving", is_ready) is not False
        terminating = conditions.get("terminating") is True
        # kube-proxy reads ready alone: with publishNotReadyAddresses a terminating pod stays ready.
        if is_ready:
            ready.add(address)
        elif serving and terminating:
            serving_terminating.add(address)
    ports = tuple(
        SlicePort(str(p.get("name") or ""), str(p.get("protocol") or "TCP"), int(p["port"]))
        for p in obj.get("ports") or []
        if isinstance(p.get("port"), int)
    )
    state = SliceState(_frozen(ready), _frozen(serving_terminating), share(ports))
    namespace = sys.intern(str(meta.get("namespace", "")))
    return ServiceRef(namespace, str(service)), str(meta.get("name", "")), state


@dataclass
class ServiceEndpoints:
    """All slices of one Service."""

    slices: dict[str, SliceState] = field(default_factory=dict)
    remembered_ports: dict[str, int] = field(default_factory=dict)
    """The port numbers earlier slices gave: when the last backend leaves, the slices list no
    ports, and the dead backends' real servers still listen on the numbers they had."""
    backend_ports: dict[str, dict[str, int]] = field(default_factory=dict)
    """Backend → the port numbers of the slice that listed it. Slices of one Service may give a
    port name different numbers (pods of a rollout that changes the container port): each
    backend's real servers listen on its own slice's."""

    def remember_ports(self, keep: Iterable[str] = ()) -> None:
        """Called before the slices change, so the numbers they gave outlive them. ``keep``: the
        backends whose numbers are still wanted besides those listed now (the ones in use at the
        last decision, which may be about to be judged dead)."""
        self.remembered_ports |= self._current_ports()
        for state in self.slices.values():
            numbers = {port.name: port.port for port in state.ports}
            for address in state.ready | state.serving_terminating:
                self.backend_ports[address] = numbers
        wanted = self.known() | frozenset(keep)
        for address in [a for a in self.backend_ports if a not in wanted]:
            del self.backend_ports[address]

    def ports_of(self, backends: Iterable[str]) -> dict[str, int]:
        """The port numbers the backends' real servers listen on: their slices', else the Service's."""
        numbers = self.endpoint_ports()
        for address in backends:
            numbers |= self.backend_ports.get(address, {})
        return numbers

    def by_ports(self, backends: Iterable[str]) -> list[tuple[dict[str, int], frozenset[str]]]:
        """The backends grouped by the port numbers their real servers listen on (one group, but
        where slices gave one port name different numbers)."""
        groups: dict[tuple[tuple[str, int], ...], set[str]] = {}
        for address in sorted(backends):
            numbers = self.ports_of([address])
            groups.setdefault(tuple(sorted(numbers.items())), set()).add(address)
        return [(dict(key), frozenset(members)) for key, members in groups.items()]

    def in_use(self) -> frozenset[str]:
        """The backends kube-proxy programs: the ready ones, else the serving terminating ones."""
        if len(self.slices) == 1:  # most Services: the slice's own set, shared rather than copied
            (only,) = self.slices.values()
            return only.ready or only.serving_terminating
        ready = frozenset().union(*(s.ready for s in self.slices.values()))
        if ready:
            return ready
        return frozenset().union(*(s.serving_terminating for s in self.slices.values()))

    def known(self) -> frozenset[str]:
        """Every address any slice lists, in use or not: never to be touched as dead."""
        return frozenset().union(*(s.ready | s.serving_terminating for s in self.slices.values()))

    def _current_ports(self) -> dict[str, int]:
        return {port.name: port.port for state in self.slices.values() for port in state.ports}

    def endpoint_ports(self) -> dict[str, int]:
        """Service port name → the port endpoints listen on (the IPVS real server port): what the
        slices give now, else what they gave before."""
        return self.remembered_ports | self._current_ports()


@dataclass(frozen=True)
class ServicePortInfo:
    name: str
    protocol: str
    port: int
    target_port: int | str


@dataclass(frozen=True)
class ServiceInfo:
    ref: ServiceRef
    uid: str
    labels: Mapping[str, str]
    cluster_ips: tuple[str, ...]
    ports: tuple[ServicePortInfo, ...]

    def protocols(self) -> frozenset[str]:
        return frozenset(port.protocol for port in self.ports)


def parse_service(obj: Mapping[str, Any]) -> ServiceInfo | None:
    """A Service with a cluster IP (the VIP kube-proxy programs); None for headless and ExternalName."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    cluster_ips = tuple(ip for ip in (_canonical(raw) for raw in ips) if ip is not None)
    if not cluster_ips or spec.get("type") == "ExternalName":
        return None
    ports = tuple(
        ServicePortInfo(
            name=str(p.get("name") or ""),
            protocol=str(p.get("protocol") or "TCP"),
            port=int(p["port"]),
            target_port=p.get("targetPort", p["port"]),
        )
        for p in spec.get("ports") or []
        if isinstance(p.get("port"), int)
    )
    return ServiceInfo(
        ref=ServiceRef(sys.intern(str(meta.get("namespace", ""))), str(meta.get("name", ""))),
        uid=str(meta.get("uid", "")),
        labels=dict(meta.get("labels") or {}),
        cluster_ips=cluster_ips,
        ports=share(ports),
    )


def resolve_target_port(port: ServicePortInfo, endpoint_ports: Mapping[str, int]) -> int | None:
    """The real server port of a Service port: from the slices by port name, else a numeric targetPort."""
    if port.name in endpoint_ports:
        return endpoint_ports[port.name]
    if isinstance(port.target_port, int):
        return port.target_port
    return None
