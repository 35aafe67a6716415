"""The operator's side of a sysctl gap (``sysctl_gaps.py``): the cluster's record of open gaps,
the policies' condition, and one Warning Event per node when its gap opens."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from proxymedic.api import reasons
from proxymedic.api.reasons import EventKind
from proxymedic.api.sysctls import EXPIRE_NODEST_CONN
from proxymedic.kube.events import EventRecorder, ObjectRef
from proxymedic.operator.state import Cluster
from proxymedic.operator.sysctl_gaps import SysctlGap, sysctl_gap

logger = logging.getLogger("proxymedic.operator")


class SysctlGapNotices:
    """Keeps ``cluster.sysctl_gaps`` current and posts one Warning Event per node when its gap opens.

    The gap is judged again on each of the node's reports and on every sweep (a policy edit can
    open or close it). It stays open, without a second Event, while its cause changes; it closes
    when the sysctl is 1 again or a policy can set it. An operator that restarts says it again.
    """

    def __init__(self, cluster: Cluster, recorder: EventRecorder, clock: Callable[[], datetime]) -> None:
        self.cluster = cluster
        self.recorder = recorder
        self.clock = clock

    async def check(self, node: str) -> None:
        cluster = self.cluster
        status = cluster.healths.get(node)
        now = self.clock()
        policies = [
            entry.policy
            for entry in cluster.policies.values()
            if entry.policy is not None and cluster.node_selected(entry.policy, node, now)
        ]
        gap = sysctl_gap(node, status, policies) if status is not None else None
        before = cluster.sysctl_gaps.get(node)
        if gap == before:
            return
        self._touch(gap, before)
        if gap is None:
            del cluster.sysctl_gaps[node]
            logger.info("%s on %s is no longer left unfixed", EXPIRE_NODEST_CONN, node)
            return
        cluster.sysctl_gaps[node] = gap
        if before is None:
            subject = ObjectRef("v1", "Node", node, uid=cluster.node_uids.get(node))
            await self.recorder.post(subject, reasons.SYSCTL_NOT_ENFORCED, gap.message(), EventKind.WARNING)

    async def sweep(self) -> None:
        for node in sorted(set(self.cluster.healths) | set(self.cluster.sysctl_gaps)):
            await self.check(node)

    def _touch(self, *gaps: SysctlGap | None) -> None:
        """The policies named by a gap that opened, changed or closed rewrite their condition."""
        names = {name for gap in gaps if gap is not None for name in gap.policies}
        for name in names:
            entry = self.cluster.policies.get(name)
            if entry is not None:
                entry.status_dirty = True
