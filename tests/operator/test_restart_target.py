"""A restart deletes only a DaemonSet's kube-proxy pod; with none, the operator backs off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from proxymedic.operator.restart_target import MIRROR_ANNOTATION, Backoff, refusal, split

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def pod(name: str, owner: str | None = "DaemonSet", **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "annotations": annotations}
    if owner:
        meta["ownerReferences"] = [{"kind": owner, "name": "x", "uid": "u", "controller": True}]
    return {"metadata": meta}


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        (pod("kube-proxy-abc"), None),
        (pod("kube-proxy-node-1", "Node", **{MIRROR_ANNOTATION: "1f2e"}), "static pod's mirror"),
        (pod("kube-proxy-node-1", "Node"), "static pod's mirror"),
        (pod("kube-proxy-bare", None), "it has no controller"),
        (pod("kube-proxy-rs", "ReplicaSet"), "its controller is a ReplicaSet"),
    ],
    ids=["daemonset", "mirror-annotated", "owned-by-node", "bare", "replicaset"],
)
def test_refusal(obj: dict[str, Any], fragment: str | None) -> None:
    why = refusal(obj)
    if fragment is None:
        assert why is None
    else:
        assert why is not None
        assert fragment in why


def test_split_keeps_the_daemonset_pods() -> None:
    restartable, refused = split([pod("a"), pod("m", "Node")])
    assert [p["metadata"]["name"] for p in restartable] == ["a"]
    assert len(refused) == 1


def test_backoff_doubles_up_to_its_cap_and_resets_when_found() -> None:
    backoff = Backoff(first=timedelta(minutes=1), cap=timedelta(minutes=4))
    assert not backoff.waiting("n", T0)
    assert backoff.missed("n", T0) == (True, timedelta(minutes=1))
    assert backoff.waiting("n", T0 + timedelta(seconds=59))
    assert not backoff.waiting("n", T0 + timedelta(minutes=1))
    assert backoff.missed("n", T0 + timedelta(minutes=1)) == (False, timedelta(minutes=2))
    assert backoff.missed("n", T0 + timedelta(minutes=3)) == (False, timedelta(minutes=4))
    assert backoff.missed("n", T0 + timedelta(minutes=7)) == (False, timedelta(minutes=4))
    backoff.found("n")
    assert not backoff.waiting("n", T0 + timedelta(minutes=8))
    assert backoff.missed("n", T0 + timedelta(minutes=8))[0], "a new episode"
