"""kube-proxy's view of a Service's backends, from its EndpointSlices."""

from __future__ import annotations

from typing import Any

import pytest

from proxymedic.operator.backends import (
    ServiceEndpoints,
    ServicePortInfo,
    parse_service,
    parse_slice,
    resolve_target_port,
)

pytestmark = pytest.mark.unit


def endpoint(
    ip: str, ready: bool | None = True, serving: bool | None = None, terminating: bool | None = None
) -> Any:
    conditions = {
        k: v
        for k, v in (("ready", ready), ("serving", serving), ("terminating", terminating))
        if v is not None
    }
    return {"addresses": [ip], "conditions": conditions}


def slice_obj(
    name: str, *endpoints: Any, service: str = "kube-dns", address_type: str = "IPv4"
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "kube-system",
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": address_type,
        "endpoints": list(endpoints),
        "ports": [
            {"name": "dns", "protocol": "UDP", "port": 53},
            {"name": "dns-tcp", "protocol": "TCP", "port": 53},
        ],
    }


def service_endpoints(*slices: dict[str, Any]) -> ServiceEndpoints:
    state = ServiceEndpoints()
    for obj in slices:
        parsed = parse_slice(obj)
        assert parsed is not None
        state.slices[parsed[1]] = parsed[2]
    return state


@pytest.mark.parametrize(
    ("endpoints", "in_use"),
    [
        ([endpoint("10.0.0.1"), endpoint("10.0.0.2")], {"10.0.0.1", "10.0.0.2"}),
        ([endpoint("10.0.0.1"), endpoint("10.0.0.2", ready=False)], {"10.0.0.1"}),
        (
            [endpoint("10.0.0.1"), endpoint("10.0.0.2", ready=False, serving=True, terminating=True)],
            {"10.0.0.1"},
        ),
        ([endpoint("10.0.0.2", ready=False, serving=True, terminating=True)], {"10.0.0.2"}),
        ([endpoint("10.0.0.2", ready=False, serving=False, terminating=True)], set()),
        ([endpoint("10.0.0.3", ready=None)], {"10.0.0.3"}),
        (
            [endpoint("10.0.0.1"), endpoint("10.0.0.2", ready=True, serving=True, terminating=True)],
            {"10.0.0.1", "10.0.0.2"},
        ),
        ([{"addresses": [], "conditions": {}}, {"addresses": ["not-an-ip"]}], set()),
    ],
    ids=[
        "all-ready",
        "not-ready-leaves",
        "terminating-leaves-while-others-ready",
        "terminating-fallback",
        "terminating-not-serving",
        "absent-conditions-mean-ready",
        "ready-terminating-stays-as-with-publish-not-ready-addresses",
        "malformed-addresses-ignored",
    ],
)
def test_in_use_follows_kube_proxy(endpoints: list[Any], in_use: set[str]) -> None:
    assert service_endpoints(slice_obj("a", *endpoints)).in_use() == in_use


def test_backend_moving_between_slices_stays_in_use() -> None:
    state = service_endpoints(slice_obj("a", endpoint("10.0.0.1")), slice_obj("b", endpoint("10.0.0.2")))
    assert state.in_use() == {"10.0.0.1", "10.0.0.2"}
    moved = parse_slice(slice_obj("b", endpoint("10.0.0.2"), endpoint("10.0.0.1")))
    assert moved is not None
    state.slices["b"] = moved[2]
    state.slices.pop("a")
    assert state.in_use() == {"10.0.0.1", "10.0.0.2"}


def test_known_includes_terminating_backends() -> None:
    state = service_endpoints(slice_obj("a", endpoint("10.0.0.1"), endpoint("10.0.0.2", False, True, True)))
    assert state.known() == {"10.0.0.1", "10.0.0.2"}


def test_slices_without_service_or_of_fqdn_type_are_ignored() -> None:
    assert parse_slice(slice_obj("a", endpoint("10.0.0.1"), address_type="FQDN")) is None
    orphan = slice_obj("a", endpoint("10.0.0.1"))
    orphan["metadata"]["labels"] = {}
    assert parse_slice(orphan) is None


def test_ipv6_addresses_are_canonical() -> None:
    state = service_endpoints(slice_obj("a", endpoint("FD00::0001"), address_type="IPv6"))
    assert state.in_use() == {"fd00::1"}


def test_service_parsing_and_target_ports() -> None:
    svc = parse_service(
        {
            "metadata": {
                "name": "kube-dns",
                "namespace": "kube-system",
                "uid": "u1",
                "labels": {"k8s-app": "kube-dns"},
            },
            "spec": {
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10", "fd00::a"],
                "ports": [
                    {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": "dns"},
                    {"name": "metrics", "protocol": "TCP", "port": 9153, "targetPort": 9153},
                ],
            },
        }
    )
    assert svc is not None
    assert svc.cluster_ips == ("10.96.0.10", "fd00::a")
    assert svc.protocols() == {"UDP", "TCP"}
    dns, metrics = svc.ports
    assert resolve_target_port(dns, {"dns": 5353}) == 5353
    assert resolve_target_port(dns, {}) is None
    assert resolve_target_port(metrics, {}) == 9153
    assert resolve_target_port(ServicePortInfo("", "UDP", 53, 53), {"": 1053}) == 1053


@pytest.mark.parametrize(
    "spec",
    [{"clusterIP": "None"}, {"type": "ExternalName", "externalName": "example.com"}, {}],
    ids=["headless", "external-name", "no-ip"],
)
def test_services_without_a_vip_are_skipped(spec: dict[str, Any]) -> None:
    assert parse_service({"metadata": {"name": "x", "namespace": "y"}, "spec": spec}) is None
