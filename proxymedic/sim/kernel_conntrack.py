"""The conntrack part of the modelled kernel: UDP entries with timeouts, count and max.

Only what ProxyMedic senses and repairs is modelled: one UDP entry per client flow to a
Service VIP, recording the original destination (VIP:port) and the reply source (the
backend the flow was DNATed to). Simplification: an entry that has seen a reply uses
``nf_conntrack_udp_timeout_stream``, one that has not uses ``nf_conntrack_udp_timeout``
(the kernel also requires a second request after the reply before it calls a flow a stream).
"""

from __future__ import annotations

from dataclasses import dataclass

from proxymedic.dataplane.types import ConntrackStats, Endpoint, IPAddress

FlowKey = tuple[IPAddress, int, IPAddress, int]  # client ip, client port, vip, port


@dataclass
class ConntrackEntry:
    reply_source: Endpoint
    expires_at: float
    replied: bool = False


@dataclass
class ConntrackTable:
    max_entries: int = 262144
    udp_timeout: int = 30
    udp_timeout_stream: int = 120
    drops: int = 0
    insert_failed: int = 0
    early_drops: int = 0

    def __post_init__(self) -> None:
        self.entries: dict[FlowKey, ConntrackEntry] = {}

    def expire(self, now: float) -> None:
        for key in [key for key, entry in self.entries.items() if entry.expires_at <= now]:
            del self.entries[key]

    def lookup(self, key: FlowKey, now: float) -> ConntrackEntry | None:
        entry = self.entries.get(key)
        if entry is not None and entry.expires_at <= now:
            del self.entries[key]
            return None
        return entry

    def admit(self, key: FlowKey, now: float) -> bool:
        """Room for this flow's entry? A full table early-drops an entry that never saw a reply.

        False means the packet is dropped before any NAT happens (F6 in docs/architecture.md).
        """
        if self.lookup(key, now) is not None or len(self.entries) < self.max_entries:
            return True
        for key, entry in self.entries.items():
            if not entry.replied:
                del self.entries[key]
                self.early_drops += 1
                return True
        self.drops += 1
        self.insert_failed += 1
        return False

    def track(self, key: FlowKey, reply_source: Endpoint, replied: bool, now: float) -> None:
        """Create or refresh the entry of a forwarded packet (after ``admit`` said yes)."""
        entry = self.entries.get(key)
        if entry is None:
            entry = ConntrackEntry(reply_source=reply_source, expires_at=now)
            self.entries[key] = entry
        entry.reply_source = reply_source
        entry.replied = entry.replied or replied
        entry.expires_at = now + (self.udp_timeout_stream if entry.replied else self.udp_timeout)

    def drop_flow(self, key: FlowKey, reply_source: Endpoint) -> None:
        """IPVS expiring a connection with conntrack=1 drops its conntrack entry too."""
        entry = self.entries.get(key)
        if entry is not None and entry.reply_source == reply_source:
            del self.entries[key]

    def delete_udp_entries(self, vip: IPAddress, port: int, backend: IPAddress) -> int:
        doomed = [
            key
            for key, entry in self.entries.items()
            if key[2] == vip and key[3] == port and entry.reply_source.ip == backend
        ]
        for key in doomed:
            del self.entries[key]
        return len(doomed)

    def reply_sources(self, vip: IPAddress, port: int) -> dict[Endpoint, int]:
        counts: dict[Endpoint, int] = {}
        for key, entry in self.entries.items():
            if key[2] == vip and key[3] == port:
                counts[entry.reply_source] = counts.get(entry.reply_source, 0) + 1
        return counts

    def stats(self) -> ConntrackStats:
        return ConntrackStats(
            count=len(self.entries),
            max=self.max_entries,
            drops=self.drops,
            insert_failed=self.insert_failed,
            early_drops=self.early_drops,
        )
