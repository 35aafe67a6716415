"""The restart record: written on the operator's Events, read back by a restarted operator and by
``proxymedic diagnose``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from proxymedic.api import reasons
from proxymedic.api.reasons import EventKind
from proxymedic.kube.client import JsonObject, KubeClient
from proxymedic.kube.events import EventRecorder, ObjectRef
from proxymedic.kube.resources import Resource
from proxymedic.operator.guardrails import ActionKind, ActionRecord
from proxymedic.operator.record import restart_history, restart_record

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


class PostedEvents(KubeClient):
    """Keeps what the recorder creates; no HTTP session is opened."""

    def __init__(self) -> None:
        self.created: list[JsonObject] = []

    async def create(self, resource: Resource, obj: JsonObject, namespace: str | None = None) -> JsonObject:
        self.created.append(obj)
        return obj


async def test_the_record_the_operator_posts_is_the_record_it_reads_back() -> None:
    api = PostedEvents()
    recorder = EventRecorder(api, COMPONENT, "test")
    # A message that does not name the policy: the annotations alone say it.
    await recorder.post(
        ObjectRef("v1", "Node", "node-7"),
        reasons.KUBE_PROXY_RESTARTED,
        "deleted kube-proxy pod kube-proxy-x on node-7: sync stale",
        EventKind.WARNING,
        now=NOW - timedelta(minutes=3),
        annotations=restart_record("coredns-edge", "node-7"),
    )
    [posted] = api.created
    history = restart_history(api.created, COMPONENT, NOW)
    assert history == {
        "coredns-edge": [ActionRecord(ActionKind.RESTART_KUBE_PROXY, NOW - timedelta(minutes=3), "node-7")]
    }
    assert posted["metadata"]["annotations"] == restart_record("coredns-edge", "node-7")


def test_an_event_of_an_earlier_version_is_read_from_its_message() -> None:
    [record] = restart_history([event()], COMPONENT, NOW)["coredns"]
    assert record.node == "node-2"
