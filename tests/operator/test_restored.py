"""Reading past kube-proxy restarts back from the operator's Events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from proxymedic.operator.guardrails import ActionKind
from proxymedic.operator.restored import restart_history

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
COMPONENT = "proxymedic-operator"


def _stamp(ago: timedelta) -> str:
    return (NOW - ago).strftime("%Y-%m-%dT%H:%M:%SZ")


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "reason": "KubeProxyRestarted",
        "message": "deleted kube-proxy pod kube-proxy-a on node-2: stale [policy coredns]",
        "involvedObject": {"kind": "Node", "name": "node-2"},
        "firstTimestamp": _stamp(timedelta(minutes=20)),
        "lastTimestamp": _stamp(timedelta(minutes=20)),
        "count": 1,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
    }
    base.update(overrides)
    return base


def test_a_restart_event_becomes_a_record_of_its_policy_and_node() -> None:
    history = restart_history([event()], COMPONENT, NOW)
    [record] = history["coredns"]
    assert (record.kind, record.node, record.at) == (
        ActionKind.RESTART_KUBE_PROXY,
        "node-2",
        NOW - timedelta(minutes=20),
    )


def test_a_repeated_event_counts_each_restart_the_later_ones_at_its_last_time() -> None:
    repeated = event(count=3, lastTimestamp=_stamp(timedelta(minutes=2)))
    times = sorted(record.at for record in restart_history([repeated], COMPONENT, NOW)["coredns"])
    assert times == [NOW - timedelta(minutes=20), NOW - timedelta(minutes=2), NOW - timedelta(minutes=2)]


@pytest.mark.parametrize(
    ("why", "overrides"),
    [
        ("another reason", {"reason": "KubeProxyNotFound"}),
        ("another component", {"source": {"component": "kubelet"}, "reportingComponent": "kubelet"}),
        ("no policy in the message", {"message": "deleted kube-proxy pod kube-proxy-a"}),
        (
            "older than an hour",
            {"firstTimestamp": _stamp(timedelta(hours=2)), "lastTimestamp": _stamp(timedelta(hours=2))},
        ),
        ("unreadable time", {"firstTimestamp": "yesterday", "lastTimestamp": None}),
        ("no node", {"involvedObject": {"kind": "Node"}}),
    ],
)
def test_what_is_no_evidence_of_a_restart_is_ignored(why: str, overrides: dict[str, Any]) -> None:
    assert restart_history([event(**overrides)], COMPONENT, NOW) == {}, why


def test_a_nonsense_count_counts_once_and_a_huge_one_is_bounded() -> None:
    assert len(restart_history([event(count="many")], COMPONENT, NOW)["coredns"]) == 1
    assert len(restart_history([event(count=10**9)], COMPONENT, NOW)["coredns"]) == 100
