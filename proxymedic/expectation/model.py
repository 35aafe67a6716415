"""The parts of Services, EndpointSlices and Nodes that kube-proxy reads, parsed from plain dicts.

Inputs are API objects as the API server returns them (or as manifests write them): fields the
server would default are defaulted here the same way (a port's protocol is TCP, its name "";
an endpoint's absent ``ready`` and ``serving`` conditions mean true). Objects kube-proxy does
not watch are dropped here, so the rules in ``ipvs.py`` see only what kube-proxy sees.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
SERVICE_PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
"""Services with this label belong to another proxy: kube-proxy's informers select them out."""
HEADLESS_LABEL = "service.kubernetes.io/headless"
"""Set on the EndpointSlices of headless Services; kube-proxy's informers select them out too."""
ZONE_LABEL = "topology.kubernetes.io/zone"


class Family(enum.StrEnum):
    IPV4 = "IPv4"
    IPV6 = "IPv6"

    @classmethod
    def of(cls, address: str) -> Family:
        return cls.IPV6 if ":" in address else cls.IPV4


def canonical_ip(raw: Any) -> str | None:
    """The address in canonical form (``FD00::A`` → ``fd00::a``), None if it is not one."""
    return _canonical(str(raw).strip())


# The same few thousand addresses are parsed on every change of every Service, for every node
# judged: parsing dominated the operator's judgement of a rollout. Bounded caches.
@functools.lru_cache(maxsize=65536)
def _canonical(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


@functools.lru_cache(maxsize=65536)
def ip_sort_key(address: str) -> tuple[int, int]:
    """IPv4 before IPv6, then numerically: the order ``ipvsadm -Ln`` readers expect."""
    ip = ipaddress.ip_address(address)
    return (ip.version, int(ip))


@dataclass(frozen=True)
class ServicePortSpec:
    name: str
    protocol: str
    port: int
    node_port: int


@dataclass(frozen=True)
class ServiceSpec:
    namespace: str
    name: str
    cluster_ips: tuple[str, ...]
    ports: tuple[ServicePortSpec, ...]
    external_ips: tuple[str, ...]
    load_balancer_vips: tuple[str, ...]
    """Ingress IPs in VIP mode; ``ipMode: Proxy`` ingress is the load balancer's business."""
    internal_policy_local: bool
    external_policy_local: bool
    """``externalTrafficPolicy: Local`` on a Service reachable from outside (as the API function
    ExternalPolicyLocal: type NodePort or LoadBalancer, or externalIPs set)."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def cluster_ip(self, family: Family) -> str | None:
        return next((ip for ip in self.cluster_ips if Family.of(ip) is family), None)


@dataclass(frozen=True)
class EndpointSpec:
    address: str
    node_name: str | None
    ready: bool
    serving: bool
    terminating: bool
    zone_hints: frozenset[str]
    node_hints: frozenset[str]


@dataclass(frozen=True)
class SlicePortSpec:
    name: str
    protocol: str
    port: int


@dataclass(frozen=True)
class SliceSpec:
    namespace: str
    service: str
    name: str
    family: Family
    ports: tuple[SlicePortSpec, ...]
    endpoints: tuple[EndpointSpec, ...]

    @property
    def service_key(self) -> tuple[str, str]:
        return (self.namespace, self.service)


@dataclass(frozen=True)
class NodeSpec:
    name: str
    labels: Mapping[str, str]
    internal_ips: tuple[str, ...]

    @property
    def zone(self) -> str:
        return self.labels.get(ZONE_LABEL, "")


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _ips(values: Iterable[Any]) -> tuple[str, ...]:
    return tuple(ip for ip in (canonical_ip(value) for value in values) if ip is not None)


def parse_service(obj: Mapping[str, Any]) -> ServiceSpec | None:
    """None for the Services kube-proxy skips: headless, ExternalName, another proxy's."""
    meta = _meta(obj)
    spec = obj.get("spec") or {}
    labels = meta.get("labels") or {}
    if SERVICE_PROXY_NAME_LABEL in labels or spec.get("type") == "ExternalName":
        return None
    raw_ips = _list(spec.get("clusterIPs")) or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    cluster_ips = _ips(raw_ips)  # "None" (headless) is no address
    if not cluster_ips:
        return None
    ports = tuple(
        ServicePortSpec(
            name=str(port.get("name") or ""),
            protocol=str(port.get("protocol") or "TCP"),
            port=int(port["port"]),
            node_port=int(port.get("nodePort") or 0),
        )
        for port in _list(spec.get("ports"))
        if isinstance(port, Mapping) and isinstance(port.get("port"), int)
    )
    external_ips = _ips(_list(spec.get("externalIPs")))
    ingress = _list(((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress"))
    vips = _ips(
        entry.get("ip")
        for entry in ingress
        if isinstance(entry, Mapping) and entry.get("ip") and entry.get("ipMode", "VIP") == "VIP"
    )
    service_type = spec.get("type") or "ClusterIP"
    externally_accessible = service_type in ("NodePort", "LoadBalancer") or bool(external_ips)
    return ServiceSpec(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        cluster_ips=cluster_ips,
        ports=ports,
        external_ips=external_ips,
        load_balancer_vips=vips,
        internal_policy_local=spec.get("internalTrafficPolicy") == "Local",
        external_policy_local=externally_accessible and spec.get("externalTrafficPolicy") == "Local",
    )


def _hint_names(hints: Any, key: str) -> frozenset[str]:
    entries = _list(hints.get(key)) if isinstance(hints, Mapping) else []
    return frozenset(
        str(entry["name"]) for entry in entries if isinstance(entry, Mapping) and "name" in entry
    )


def _endpoint(raw: Mapping[str, Any], family: Family) -> EndpointSpec | None:
    addresses = _list(raw.get("addresses"))
    # kube-proxy uses the first address only, and drops it when its family is not the slice's.
    address = canonical_ip(addresses[0]) if addresses else None
    if address is None or Family.of(address) is not family:
        return None
    conditions = raw.get("conditions") or {}
    node_name = raw.get("nodeName")
    return EndpointSpec(
        address=address,
        node_name=str(node_name) if node_name else None,
        ready=conditions.get("ready") is not False,
        serving=conditions.get("serving") is not False,
        terminating=conditions.get("terminating") is True,
        zone_hints=_hint_names(raw.get("hints"), "forZones"),
        node_hints=_hint_names(raw.get("hints"), "forNodes"),
    )


def parse_slice(obj: Mapping[str, Any]) -> SliceSpec | None:
    """None for slices kube-proxy ignores: no Service label, FQDN, a headless or another proxy's Service."""
    meta = _meta(obj)
    labels = meta.get("labels") or {}
    service = labels.get(SERVICE_NAME_LABEL)
    address_type = obj.get("addressType")
    if not service or address_type not in (Family.IPV4, Family.IPV6):
        return None
    if SERVICE_PROXY_NAME_LABEL in labels or HEADLESS_LABEL in labels:
        return None
    family = Family(address_type)
    ports = tuple(
        SlicePortSpec(str(port.get("name") or ""), str(port.get("protocol") or "TCP"), int(port["port"]))
        for port in _list(obj.get("ports"))
        if isinstance(port, Mapping) and isinstance(port.get("port"), int) and port["port"] != 0
    )
    endpoints = tuple(
        endpoint
        for endpoint in (
            _endpoint(raw, family) for raw in _list(obj.get("endpoints")) if isinstance(raw, Mapping)
        )
        if endpoint is not None
    )
    return SliceSpec(
        namespace=str(meta.get("namespace") or "default"),
        service=str(service),
        name=str(meta.get("name") or ""),
        family=family,
        ports=ports,
        endpoints=endpoints,
    )


def parse_node(obj: Mapping[str, Any]) -> NodeSpec:
    meta = _meta(obj)
    addresses = _list((obj.get("status") or {}).get("addresses"))
    internal = _ips(
        entry.get("address")
        for entry in addresses
        if isinstance(entry, Mapping) and entry.get("type") == "InternalIP"
    )
    return NodeSpec(str(meta.get("name") or ""), dict(meta.get("labels") or {}), internal)
