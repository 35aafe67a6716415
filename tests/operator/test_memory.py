"""What the operator keeps per watched object: compact state, no copies, no framework memories
for the kinds it only reacts to (the footprint at 10,000 Services, docs/benchmarks-notes.md)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from proxymedic.api.meta import API_VERSION
from proxymedic.expectation import parse_slice as parse_slice_spec
from proxymedic.operator.backends import ServiceEndpoints, ServiceRef, SliceState
from proxymedic.operator.causality import Evidence
from proxymedic.operator.handlers import EventOnlyMemories
from proxymedic.operator.held import HeldSlice
from proxymedic.operator.state import Cluster

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _slice(name: str, addresses: list[str], node: str | None = None) -> dict[str, Any]:
    endpoint: dict[str, Any] = {"conditions": {"ready": True}}
    if node:
        endpoint["nodeName"] = node
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "generation": 1,
            "labels": {"kubernetes.io/service-name": "svc"},
        },
        "addressType": "IPv4",
        "endpoints": [{**endpoint, "addresses": [address]} for address in addresses],
        "ports": [{"name": "p", "protocol": "UDP", "port": 53}],
    }


def test_a_slice_is_held_with_one_copy_of_each_address_and_shared_empty_sets() -> None:
    cluster = Cluster()
    node = "-".join(["node", "1"])  # not a constant: a string of its own, as JSON decoding makes
    cluster.set_slice(_slice("a", ["10.0.0.1", "10.0.0.2"], node=node), deleted=False, now=NOW)
    cluster.set_slice(_slice("b", ["10.0.0.3"], node="-".join(["node", "1"])), deleted=False, now=NOW)
    ref = ServiceRef("ns", "svc")
    specs = [cluster.held_slices[(ref, name)].spec() for name in ("a", "b")]
    endpoints = [endpoint for spec in specs for endpoint in spec.endpoints]
    hints = {id(e.zone_hints) for e in endpoints} | {id(e.node_hints) for e in endpoints}
    assert len(hints) == 1  # one shared empty set, not two new ones per endpoint
    assert len({id(e.node_name) for e in endpoints}) == 1  # one string per node
    state = cluster.endpoints[ref].slices["a"]
    by_value = {address: address for address in state.ready}
    assert all(e.address is by_value[e.address] for e in specs[0].endpoints)  # one string per address
    assert state.serving_terminating is cluster.endpoints[ref].slices["b"].serving_terminating


def test_a_held_slice_gives_back_what_the_expectation_parses() -> None:
    raw = _slice("a", ["10.0.0.1", "fd00::1", "10.0.0.2", "10.0.0.3", "10.0.0.4"], node="node-1")
    raw["metadata"].pop("namespace")  # held under the Service's namespace, as the Cluster has it
    endpoints = raw["endpoints"]
    endpoints[1]["conditions"] = {"ready": False, "serving": True, "terminating": True}
    endpoints[2]["conditions"] = {"ready": False, "serving": False, "terminating": True}
    endpoints[3]["hints"] = {"forZones": [{"name": "z1"}], "forNodes": [{"name": "node-2"}]}
    endpoints[4].pop("nodeName")
    endpoints[4]["conditions"] = {}
    parsed = parse_slice_spec(raw)
    assert parsed is not None
    held = HeldSlice.of(parsed, "ns")
    assert held.spec() == replace(parsed, namespace="ns")
    assert held.spec() is held.spec()  # built once
    plain = HeldSlice.of(replace(parsed, endpoints=parsed.endpoints[:1]), "ns")
    assert plain.hints is None  # no endpoint with hints: none kept
    assert len(parsed.endpoints) == 4  # the IPv6 address is not the IPv4 slice's
    unnamed = replace(parsed, endpoints=parsed.endpoints[3:])
    assert HeldSlice.of(unnamed, "ns").nodes is None  # no endpoint names its node: none kept
    assert HeldSlice.of(unnamed, "ns").spec() == replace(unnamed, namespace="ns")


def test_in_use_of_one_slice_is_that_slice_s_set() -> None:
    ready = frozenset({"10.0.0.1"})
    assert ServiceEndpoints({"a": SliceState(ready)}).in_use() is ready
    terminating = frozenset({"10.0.0.2"})
    assert ServiceEndpoints({"a": SliceState(frozenset(), terminating)}).in_use() is terminating
    both = ServiceEndpoints({"a": SliceState(ready), "b": SliceState(frozenset(), terminating)})
    assert both.in_use() == ready


def test_the_backends_of_one_change_share_one_baseline() -> None:
    evidence = Evidence()
    ref = ServiceRef("ns", "svc")
    evidence.backends_changed(ref, ["10.0.0.1", "10.0.0.2"], NOW)
    assert evidence.backends[ref]["10.0.0.1"] is evidence.backends[ref]["10.0.0.2"]


async def test_kopf_remembers_only_the_objects_of_kinds_that_need_it() -> None:
    memories = EventOnlyMemories()
    watched = [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"uid": "1"}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"uid": "2"}},
        {"apiVersion": "v1", "kind": "Node", "metadata": {"uid": "3"}},
        {"apiVersion": API_VERSION, "kind": "NodeProxyHealth", "metadata": {"uid": "4"}},
        {"apiVersion": API_VERSION, "kind": "RemediationIntent", "metadata": {"uid": "5"}},
    ]
    for body in watched:
        await memories.recall(body)  # type: ignore[arg-type]
    assert list(memories.iter_all_memories()) == []
    policy = {"apiVersion": API_VERSION, "kind": "ProxyHealthPolicy", "metadata": {"uid": "6"}}
    unknown = {"metadata": {"uid": "7"}}  # no kind: kept, as Kopf would
    first = await memories.recall(policy)  # type: ignore[arg-type]
    await memories.recall(unknown)  # type: ignore[arg-type]
    assert await memories.recall(policy) is first  # type: ignore[arg-type]  # the timer's state lives on
    assert len(list(memories.iter_all_memories())) == 2


def test_a_service_and_its_slices_share_one_reference_and_one_port_list() -> None:
    cluster = Cluster()
    service: dict[str, Any] = {
        "metadata": {"name": "svc", "namespace": "".join(["n", "s"]), "uid": "u"},
        "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "p", "protocol": "UDP", "port": 53}]},
    }
    other = {**service, "metadata": {**service["metadata"], "name": "other"}}
    assert cluster.set_service(service, deleted=False) is not None
    assert cluster.set_service(other, deleted=False) is not None
    ref = cluster.set_slice(_slice("a", ["10.0.0.1"]), deleted=False, now=NOW)
    info = cluster.services[ServiceRef("ns", "svc")]
    assert ref is info.ref
    assert next(iter(cluster.endpoints)) is info.ref
    assert info.ports is cluster.services[ServiceRef("ns", "other")].ports
    assert info.ref.namespace is cluster.services[ServiceRef("ns", "other")].ref.namespace
    held = cluster.held_slices[(ref, "a")]
    assert held.ports is cluster.endpoints[ref].slices["a"].ports
