"""Which kube-proxy pods a restart may delete, and how often to look again when there is none.

Deleting a pod restarts kube-proxy only where a controller brings the pod back: a DaemonSet.
A static pod's mirror (kubeadm's, or a kubelet manifest) is recreated by the kubelet from its
file, not restarted: deleting it restarts nothing, and calling that a restart would charge the
budget for nothing. Where kube-proxy is no pod at all (a systemd unit, k3s), nothing matches:
looking again every sweep would only repeat the same Warning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
NOT_FOUND_FIRST_RETRY = timedelta(minutes=1)
NOT_FOUND_MAX_RETRY = timedelta(hours=1)


def controller_kind(pod: Mapping[str, Any]) -> str | None:
    """The kind of the pod's controlling owner, or None."""
    meta = pod.get("metadata") or {}
    for owner in meta.get("ownerReferences") or []:
        if isinstance(owner, Mapping) and owner.get("controller") is True:
            return str(owner.get("kind"))
    return None


def refusal(pod: Mapping[str, Any]) -> str | None:
    """Why deleting this pod would not restart kube-proxy, or None when it would."""
    meta = pod.get("metadata") or {}
    name = meta.get("name", "?")
    if MIRROR_ANNOTATION in (meta.get("annotations") or {}) or controller_kind(pod) == "Node":
        return (
            f"{name} is a static pod's mirror: deleting it restarts nothing; restart kube-proxy on the "
            "node itself (move its manifest out of the kubelet's manifest folder and back)"
        )
    kind = controller_kind(pod)
    if kind != "DaemonSet":
        owner = f"its controller is a {kind}" if kind else "it has no controller"
        return f"{name} is not a DaemonSet's pod ({owner}): deleting it would not bring kube-proxy back"
    return None


def split(pods: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], list[str]]:
    """The pods a restart may delete, and why each other one may not be."""
    restartable: list[Mapping[str, Any]] = []
    refused: list[str] = []
    for pod in pods:
        why = refusal(pod)
        if why is None:
            restartable.append(pod)
        else:
            refused.append(why)
    return restartable, refused


@dataclass
class Backoff:
    """Per node: when to look for a restartable kube-proxy again after finding none."""

    first: timedelta = NOT_FOUND_FIRST_RETRY
    cap: timedelta = NOT_FOUND_MAX_RETRY
    _next: dict[str, tuple[datetime, timedelta]] = field(default_factory=dict)

    def waiting(self, node: str, now: datetime) -> bool:
        """Whether the node is in its back-off: no restart is attempted, nothing is posted."""
        entry = self._next.get(node)
        return entry is not None and now < entry[0]

    def missed(self, node: str, now: datetime) -> tuple[bool, timedelta]:
        """Record a miss: whether it starts an episode (worth an Event), and the wait until the next look."""
        entry = self._next.get(node)
        wait = self.first if entry is None else min(self.cap, entry[1] * 2)
        self._next[node] = (now + wait, wait)
        return entry is None, wait

    def found(self, node: str) -> None:
        self._next.pop(node, None)
