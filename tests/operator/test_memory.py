"""What the operator keeps per watched object: compact state, no copies, no framework memories
for the kinds it only reacts to (the footprint at 10,000 Services, docs/benchmarks.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from proxymedic.api.meta import API_VERSION
from proxymedic.operator.backends import ServiceEndpoints, ServiceRef, SliceState
from proxymedic.operator.causality import Evidence
from proxymedic.operator.handlers import EventOnlyMemories
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
    cluster.set_slice(
        _slice("a", ["10.0.0.1", "10.0.0.2"], node="-".join(["node", "1"])), deleted=False, now=NOW
    )
    cluster.set_slice(_slice("b", ["10.0.0.3"], node="-".join(["node", "1"])), deleted=False, now=NOW)
    ref = ServiceRef("ns", "svc")
    specs = [cluster.slice_specs[(ref, name)] for name in ("a", "b")]
    endpoints = [endpoint for spec in specs for endpoint in spec.endpoints]
    hints = {id(e.zone_hints) for e in endpoints} | {id(e.node_hints) for e in endpoints}
    assert len(hints) == 1  # one shared empty set, not two new ones per endpoint
    assert len({id(e.node_name) for e in endpoints}) == 1  # one string per node
    state = cluster.endpoints[ref].slices["a"]
    by_value = {address: address for address in state.ready}
    assert all(e.address is by_value[e.address] for e in specs[0].endpoints)  # one string per address
    assert state.serving_terminating is cluster.endpoints[ref].slices["b"].serving_terminating


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
