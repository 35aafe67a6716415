"""Which of a Service's backends are still in use now, read from its EndpointSlices just before acting.

An intent lists the live backends at decision time. Before an agent removes anything it asks the
API again: a backend listed dead may be ready again (its pod recovered, the intent was replayed
after an agent restart, a later change superseded it), or the only ones left may be terminating
but still serving. The rule follows kube-proxy's own choice of endpoints (its CategorizeEndpoints):
the ready endpoints, or, when none is ready, the terminating ones that still serve. On top of
that, a terminating TCP or SCTP endpoint that still serves is draining: kube-proxy keeps its real
server at weight 0 until its connections end, so the agent keeps it too. A UDP real server has no
such grace in kube-proxy (it is deleted at once), so for UDP the agent does what kube-proxy does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class InUse:
    """A Service's backends now: what kube-proxy programs, and what drains (serving, terminating)."""

    programmed: frozenset[str] = frozenset()
    draining: frozenset[str] = frozenset()

    def kept(self, protocol: str) -> frozenset[str]:
        """Backends whose state the agent must not touch for a port of this protocol."""
        return self.programmed if protocol == "UDP" else self.programmed | self.draining


LiveNow = Callable[[str, str], Awaitable[InUse]]
"""(namespace, service name) → its backends in use now. Raises on any failure to read: an unknown
answer never lets the agent act."""


def _canonical(address: object) -> str | None:
    try:
        return str(ipaddress.ip_address(str(address)))
    except ValueError:
        return None


def in_use(slices: Iterable[Mapping[str, Any]]) -> InUse:
    """kube-proxy's endpoints of a Service (cluster-wide: a node never programs more than these)."""
    ready: set[str] = set()
    serving_terminating: set[str] = set()
    for slice_obj in slices:
        endpoints = slice_obj.get("endpoints") if isinstance(slice_obj, Mapping) else None
        for endpoint in endpoints if isinstance(endpoints, list) else []:
            if not isinstance(endpoint, Mapping):
                continue
            conditions = endpoint.get("conditions")
            conditions = conditions if isinstance(conditions, Mapping) else {}
            # Absent conditions mean ready and serving (discovery.k8s.io/v1); kube-proxy reads
            # `ready` alone for readiness, whatever `terminating` says.
            is_ready = conditions.get("ready") is not False
            serving = conditions.get("serving", is_ready) is not False
            terminating = conditions.get("terminating") is True
            listed = endpoint.get("addresses")
            addresses = {a for a in map(_canonical, listed if isinstance(listed, list) else []) if a}
            if is_ready:
                ready |= addresses
            elif serving and terminating:
                serving_terminating |= addresses
    programmed = ready or serving_terminating
    return InUse(frozenset(programmed), frozenset(serving_terminating))
