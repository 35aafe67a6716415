"""DNS clients on simulated nodes: each re-uses one source port, as resolvers in long-lived pods do."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from proxymedic.dataplane.types import IPAddress
from proxymedic.sim.kernel import ModelledNode, Outcome


@dataclass
class ClientStats:
    sent: int = 0
    failed: int = 0
    longest_failure: float = 0.0
    """Seconds from the first failed query of a run of failures to the next answered one."""
    first_failure_at: float | None = None
    last_failure_at: float | None = None
    failing_at_end: bool = False
    _run_started: float | None = None

    def record(self, ok: bool, now: float) -> None:
        self.sent += 1
        if ok:
            if self._run_started is not None:
                self.longest_failure = max(self.longest_failure, now - self._run_started)
                self._run_started = None
            return
        self.failed += 1
        self.last_failure_at = now
        if self.first_failure_at is None:
            self.first_failure_at = now
        if self._run_started is None:
            self._run_started = now

    def close(self, now: float) -> None:
        """End of the run: a failure run still open counts up to now."""
        if self._run_started is not None:
            self.longest_failure = max(self.longest_failure, now - self._run_started)
            self._run_started = None
            self.failing_at_end = True


@dataclass
class DnsClient:
    node: str
    address: tuple[IPAddress, int]
    vip: IPAddress
    port: int = 53
    stats: ClientStats = field(default_factory=ClientStats)

    def query(self, model: ModelledNode, now: float) -> bool:
        delivery = model.deliver_udp(self.address, self.vip, self.port, now)
        ok = delivery.outcome is Outcome.ANSWERED
        self.stats.record(ok, now)
        return ok


def clients_for(node: str, index: int, vip: str, count: int) -> list[DnsClient]:
    """``count`` clients in the node's pod range (its /24 of 10.244.0.0/16 onwards: the index-th),
    each with its own fixed source port."""
    base = ipaddress.ip_address("10.244.0.0") + 256 * index + 100
    return [
        DnsClient(node=node, address=(base + i, 40000 + i), vip=ipaddress.ip_address(vip))
        for i in range(count)
    ]
