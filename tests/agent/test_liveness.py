"""A Service's backends in use now, from its EndpointSlices, by kube-proxy's rule: the ready ones,
or the serving terminating ones when none is ready; serving terminating ones drain."""

from __future__ import annotations

from typing import Any

import pytest

from proxymedic.agent.liveness import InUse, in_use

pytestmark = pytest.mark.unit

A, B = "10.244.1.5", "10.244.2.7"


def endpoint(address: str, **conditions: bool) -> dict[str, Any]:
    return {"addresses": [address], "conditions": conditions}


TERMINATING = {"ready": False, "serving": True, "terminating": True}
GONE = {"ready": False, "serving": False, "terminating": True}


@pytest.mark.parametrize(
    ("endpoints", "expected"),
    [
        ([endpoint(A)], InUse(frozenset({A}))),
        ([endpoint(A, ready=True), endpoint(B, **TERMINATING)], InUse(frozenset({A}), frozenset({B}))),
        ([endpoint(A, **TERMINATING), endpoint(B, **GONE)], InUse(frozenset({A}), frozenset({A}))),
        ([endpoint(A, ready=False)], InUse()),
        ([endpoint(A, ready=True, terminating=True)], InUse(frozenset({A}))),
        ([endpoint("fd00:10:244::0005")], InUse(frozenset({"fd00:10:244::5"}))),
        ([endpoint("not-an-ip"), {"addresses": None}, "junk"], InUse()),
    ],
    ids=[
        "no-conditions-is-ready",
        "terminating-beside-ready-drains",
        "terminating-fallback",
        "not-ready",
        "ready-alone-counts-(publishNotReadyAddresses)",
        "ipv6-canonical",
        "junk",
    ],
)
def test_in_use(endpoints: list[Any], expected: InUse) -> None:
    assert in_use([{"endpoints": endpoints}]) == expected


def test_hostile_slices_are_skipped() -> None:
    hostile: list[Any] = [
        "junk",
        7,
        None,
        {"endpoints": "x"},
        {"endpoints": [{"conditions": [], "addresses": "x"}]},
    ]
    assert in_use(hostile) == InUse()


def test_udp_keeps_only_what_kube_proxy_programs_tcp_keeps_draining_too() -> None:
    now = InUse(frozenset({A}), frozenset({B}))
    assert now.kept("UDP") == {A}
    assert now.kept("TCP") == now.kept("SCTP") == {A, B}
