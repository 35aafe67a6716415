"""The modelled kernel of one node: IPVS, conntrack and sysctls in memory, on a virtual clock.

It implements ``IPVSAdapter``, ``ConnectionTable``, ``ConntrackAdapter`` and ``SysctlAdapter``,
plus a packet-level API (``send_udp``) for simulations. Every rule below names the row of the
measured kernel table (docs/kernel.md) it reproduces, or the kernel code it follows where the
table is silent (net/netfilter/ipvs/ip_vs_core.c ``ip_vs_in_hook``, ip_vs_ctl.c
``__ip_vs_del_dest``, ip_vs_conn.c ``ip_vs_expire_nodest_conn_flush``):

- A connection entry is keyed by client ip:port -> VIP:port; its destination is chosen
  by round robin over the real servers with weight > 0.
- A destination is *available* while it is a real server of the entry's service (weight
  0 included: a quiescent server keeps its flows). Deleting a real server or its whole
  service makes it unavailable; re-adding it makes it available again (the kernel
  restores the same destination from its trash).
- A packet on an entry with an unavailable destination:
  expire_nodest_conn=0 -> dropped, and the entry's timer is not restarted (A, D1, D4);
  expire_nodest_conn=1 -> the entry expires and the packet is rescheduled on >= 5.9 (D2),
  dropped on older kernels (the "first packet lost" of docs/kernel.md).
- Removing a destination (or a service) with expire_nodest_conn=1 on >= 5.9 queues a
  flush that, after ``nodest_flush_delay``, expires every entry whose destination is
  still unavailable (B, C, D3, D6). Older kernels have no such flush.
- Each forwarded UDP packet restarts the entry's timer with the UDP timeout current at
  that moment (``udp_state_transition``). Entries that only see dropped packets keep
  their old expiry, so lowering the timeout does not shorten a stale entry (D1).
- With net.ipv4.vs.conntrack=1 (as kube-proxy sets) forwarded packets create conntrack
  entries (orig dst VIP:port, reply source = backend); expiring an IPVS entry drops its
  conntrack entry, but deleting conntrack entries never touches IPVS entries (D5).
- ``iptables_mode``: no IPVS; a live conntrack entry pins the flow to its backend until
  it idles out, whatever the rules say now (F5).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from proxymedic.dataplane import sysctl as names
from proxymedic.dataplane.types import (
    ConnectionCounts,
    ConntrackStats,
    DataplaneError,
    DataplanePermissionError,
    DataplaneUnavailableError,
    Endpoint,
    IPAddress,
    IPVSAbsentError,
    IPVSTimeouts,
    L4Protocol,
    RealServer,
    ServiceKey,
    VirtualService,
)
from proxymedic.sim.kernel_conntrack import ConntrackTable, FlowKey

Clock = Callable[[], float]
NODEST_FLUSH_KERNEL = (5, 9)
# A fresh kernel's IPVS timeouts (900/120/300, read back in the VM: docs/kernel.md).
KERNEL_DEFAULT_TIMEOUTS = IPVSTimeouts(tcp=900, tcp_fin=120, udp=300)


@dataclass(frozen=True)
class ModelConfig:
    kernel_version: tuple[int, int] = (6, 1)
    # The kernel queues the flush one jiffy out; row B of docs/kernel.md measured it done within 0.2 s.
    nodest_flush_delay: float = 0.05
    iptables_mode: bool = False
    timeouts: IPVSTimeouts = KERNEL_DEFAULT_TIMEOUTS
    # Kernel defaults for the vs sysctls, except conntrack=1 which kube-proxy sets.
    expire_nodest_conn: int = 0
    expire_quiescent_template: int = 0
    vs_conntrack: int = 1
    conntrack_max: int = 262144
    conntrack_udp_timeout: int = 30
    conntrack_udp_timeout_stream: int = 120


class Outcome(enum.StrEnum):
    ANSWERED = "answered"  # forwarded to a backend that answers
    BACKEND_DEAD = "backend-dead"  # forwarded to a backend that does not answer
    DROPPED_NO_DESTINATION = "dropped-no-destination"  # IPVS drop: the entry's destination is gone
    NO_SERVICE = "no-service"
    NO_REAL_SERVER = "no-real-server"  # the service has no real server with weight > 0
    CONNTRACK_FULL = "conntrack-full"


@dataclass(frozen=True)
class Delivery:
    outcome: Outcome
    forwarded_to: Endpoint | None = None
    rescheduled: bool = False  # an entry with a gone destination was expired for this packet

    @property
    def answered_by(self) -> Endpoint | None:
        return self.forwarded_to if self.outcome is Outcome.ANSWERED else None


@dataclass
class Connection:
    service: ServiceKey
    destination: Endpoint
    expires_at: float
    tracked: bool  # IP_VS_CONN_F_NFCT: created while net.ipv4.vs.conntrack=1


@dataclass
class _Service:
    scheduler: str
    real_servers: dict[Endpoint, int] = field(default_factory=dict)  # endpoint -> weight, in add order
    cursor: int = 0


class ModelledNode:
    """One node's IPVS + conntrack + sysctls. All four adapter protocols, one clock."""

    def __init__(self, clock: Clock, config: ModelConfig | None = None, alive: Iterable[IPAddress] = ()):
        self.config = config or ModelConfig()
        self._clock = clock
        self.alive: set[IPAddress] = set(alive)
        self._services: dict[ServiceKey, _Service] = {}
        self._connections: dict[FlowKey, Connection] = {}
        self._flushes_due: list[float] = []
        self._timeouts = self.config.timeouts
        self.conntrack = ConntrackTable(
            max_entries=self.config.conntrack_max,
            udp_timeout=self.config.conntrack_udp_timeout,
            udp_timeout_stream=self.config.conntrack_udp_timeout_stream,
        )
        self._vs_sysctls = {
            names.EXPIRE_NODEST_CONN: self.config.expire_nodest_conn,
            names.EXPIRE_QUIESCENT_TEMPLATE: self.config.expire_quiescent_template,
            names.VS_CONNTRACK: self.config.vs_conntrack,
        }

    # --- time ---------------------------------------------------------------------------

    def _advance(self, now: float | None = None) -> float:
        """Run what fell due since the last call. State is constant between calls, so a
        flush due at t sees the same table as at the previous call."""
        now = self._clock() if now is None else now
        if any(due <= now for due in self._flushes_due):
            self._flushes_due = [due for due in self._flushes_due if due > now]
            for key, connection in list(self._connections.items()):
                if not self._available(connection):
                    self._expire(key, connection)
        for key, connection in list(self._connections.items()):
            if connection.expires_at <= now:
                self._expire(key, connection)
        self.conntrack.expire(now)
        return now

    def _expire(self, key: FlowKey, connection: Connection) -> None:
        del self._connections[key]
        if connection.tracked:
            self.conntrack.drop_flow(key, connection.destination)

    def _available(self, connection: Connection) -> bool:
        service = self._services.get(connection.service)
        return service is not None and connection.destination in service.real_servers

    def _destination_removed(self, now: float) -> None:
        """``__ip_vs_del_dest``: queue the nodest flush (kernel >= 5.9, expire_nodest_conn=1)."""
        if self._vs_sysctls[names.EXPIRE_NODEST_CONN] and self.config.kernel_version >= NODEST_FLUSH_KERNEL:
            self._flushes_due.append(now + self.config.nodest_flush_delay)

    # --- what kube-proxy (or the simulation) programs ------------------------------------

    def add_service(self, key: ServiceKey, scheduler: str = "rr") -> None:
        self._advance()
        self._services.setdefault(key, _Service(scheduler=scheduler))

    def delete_service(self, key: ServiceKey) -> bool:
        """Unlinks every destination: D4 (no help with expire_nodest_conn=0), D6 (flush with 1)."""
        now = self._advance()
        if self._services.pop(key, None) is None:
            return False
        self._destination_removed(now)
        return True

    def add_real_server(self, key: ServiceKey, endpoint: Endpoint, weight: int = 1) -> None:
        """Add or edit a real server (weight 0 = quiescent: keeps flows, gets no new ones)."""
        self._advance()
        service = self._services.get(key)
        if service is None:
            raise DataplaneError(f"no virtual service {key}")
        service.real_servers[endpoint] = weight

    def set_endpoints(self, key: ServiceKey, endpoints: Iterable[Endpoint]) -> None:
        """What a kube-proxy sync does: make the real servers exactly ``endpoints`` (weight 1)."""
        now = self._advance()
        service = self._services.get(key)
        if service is None:
            raise DataplaneError(f"no virtual service {key}")
        wanted = list(endpoints)
        for endpoint in [endpoint for endpoint in service.real_servers if endpoint not in wanted]:
            del service.real_servers[endpoint]
            self._destination_removed(now)
        for endpoint in wanted:
            service.real_servers.setdefault(endpoint, 1)

    def set_alive(self, ip: IPAddress, alive: bool) -> None:
        (self.alive.add if alive else self.alive.discard)(ip)

    # --- IPVSAdapter --------------------------------------------------------------------

    def _require_ipvs(self) -> None:
        if self.config.iptables_mode:
            raise IPVSAbsentError("IPVS is not in use on this node (iptables mode)")

    def list_services(self) -> list[VirtualService]:
        self._require_ipvs()
        self._advance()
        per_destination: dict[tuple[ServiceKey, Endpoint], int] = {}
        for connection in self._connections.values():
            pair = (connection.service, connection.destination)
            per_destination[pair] = per_destination.get(pair, 0) + 1
        return [
            VirtualService(
                key=key,
                scheduler=service.scheduler,
                real_servers=tuple(
                    # UDP entries count as inactive connections in IPVS.
                    RealServer(endpoint, weight, inactive_conns=per_destination.get((key, endpoint), 0))
                    for endpoint, weight in service.real_servers.items()
                ),
            )
            for key, service in self._services.items()
        ]

    def get_services(self, keys: Collection[ServiceKey]) -> list[VirtualService]:
        wanted = frozenset(keys)
        return [vs for vs in self.list_services() if vs.key in wanted]

    def remove_real_server(self, service: ServiceKey, endpoint: Endpoint) -> bool:
        self._require_ipvs()
        now = self._advance()
        entry = self._services.get(service)
        if entry is None or endpoint not in entry.real_servers:
            return False
        del entry.real_servers[endpoint]
        self._destination_removed(now)  # B, C
        return True

    def flush_dead_real_server(self, service: ServiceKey, endpoint: Endpoint) -> None:
        """D3: re-add with weight 0 (restoring the destination), then delete: queues the flush."""
        self._require_ipvs()
        now = self._advance()
        entry = self._services.get(service)
        if entry is None:
            raise DataplaneError(f"no virtual service {service}")
        entry.real_servers.pop(endpoint, None)
        self._destination_removed(now)

    def get_timeouts(self) -> IPVSTimeouts:
        self._require_ipvs()
        return self._timeouts

    def set_timeouts(self, timeouts: IPVSTimeouts) -> None:
        """0 leaves a value unchanged. Existing entries keep their expiry (D1)."""
        self._require_ipvs()
        self._advance()
        current = self._timeouts
        self._timeouts = IPVSTimeouts(
            tcp=timeouts.tcp or current.tcp,
            tcp_fin=timeouts.tcp_fin or current.tcp_fin,
            udp=timeouts.udp or current.udp,
        )

    # --- ConnectionTable ----------------------------------------------------------------

    def connection_counts(self, services: Collection[ServiceKey] | None = None) -> list[ConnectionCounts]:
        self._advance()
        wanted = None if services is None else frozenset(services)
        counts: dict[tuple[ServiceKey, Endpoint], int] = {}
        for connection in self._connections.values():
            if wanted is not None and connection.service not in wanted:
                continue
            pair = (connection.service, connection.destination)
            counts[pair] = counts.get(pair, 0) + 1
        return [
            ConnectionCounts(service, destination, count) for (service, destination), count in counts.items()
        ]

    def connection(self, client: tuple[IPAddress, int], vip: IPAddress, port: int) -> Connection | None:
        """The IPVS entry of one flow (for assertions on destination and expiry)."""
        self._advance()
        return self._connections.get((client[0], client[1], vip, port))

    def render_ip_vs_conn(self) -> str:
        """The table as /proc/net/ip_vs_conn prints it (for differential tests of the parser)."""
        now = self._advance()
        lines = ["Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData"]
        for (client_ip, client_port, vip, vport), connection in self._connections.items():
            destination = connection.destination
            lines.append(
                f"UDP {_proc_address(client_ip)} {client_port:04X} {_proc_address(vip)} {vport:04X} "
                f"{_proc_address(destination.ip)} {destination.port:04X} {'UDP':<11} "
                f"{max(0, int(connection.expires_at - now)):7d}"
            )
        return "\n".join(lines) + "\n"

    # --- ConntrackAdapter ---------------------------------------------------------------

    def stats(self) -> ConntrackStats:
        self._advance()
        return self.conntrack.stats()

    def delete_udp_entries(self, vip: IPAddress, port: int, backend: IPAddress) -> int:
        """F5 repair. IPVS entries are not touched (D5)."""
        self._advance()
        return self.conntrack.delete_udp_entries(vip, port, backend)

    def reply_sources(self, vip: IPAddress, port: int) -> dict[Endpoint, int]:
        self._advance()
        return self.conntrack.reply_sources(vip, port)

    # --- SysctlAdapter ------------------------------------------------------------------

    def read(self, name: str) -> int:
        if name in self._vs_sysctls:
            return self._vs_sysctls[name]
        if name == names.NF_CONNTRACK_COUNT:
            self._advance()
            return len(self.conntrack.entries)
        conntrack_values = {
            names.NF_CONNTRACK_MAX: self.conntrack.max_entries,
            names.NF_CONNTRACK_UDP_TIMEOUT: self.conntrack.udp_timeout,
            names.NF_CONNTRACK_UDP_TIMEOUT_STREAM: self.conntrack.udp_timeout_stream,
        }
        if name not in conntrack_values:
            raise DataplaneUnavailableError(f"sysctl {name} is missing in the modelled node")
        return conntrack_values[name]

    def write(self, name: str, value: int) -> None:
        if name in self._vs_sysctls:
            self._advance()
            self._vs_sysctls[name] = value
        elif name == names.NF_CONNTRACK_MAX:
            self.conntrack.max_entries = value
        elif name == names.NF_CONNTRACK_UDP_TIMEOUT:
            self.conntrack.udp_timeout = value
        elif name == names.NF_CONNTRACK_UDP_TIMEOUT_STREAM:
            self.conntrack.udp_timeout_stream = value
        elif name == names.NF_CONNTRACK_COUNT:
            raise DataplanePermissionError(f"sysctl {name} is read-only")
        else:
            raise DataplaneUnavailableError(f"sysctl {name} is missing in the modelled node")

    # --- traffic ------------------------------------------------------------------------

    def send_udp(
        self, client: tuple[IPAddress, int], vip: IPAddress, port: int, now: float | None = None
    ) -> Endpoint | None:
        """Which backend answered one UDP packet from client to vip:port, or None if it was lost."""
        return self.deliver_udp(client, vip, port, now).answered_by

    def deliver_udp(
        self, client: tuple[IPAddress, int], vip: IPAddress, port: int, now: float | None = None
    ) -> Delivery:
        """One UDP packet through the node, with what happened to it."""
        now = self._advance(now)
        flow: FlowKey = (client[0], client[1], vip, port)
        if self.config.iptables_mode:
            return self._deliver_iptables(flow, ServiceKey(L4Protocol.UDP, vip, port), now)
        tracking = bool(self._vs_sysctls[names.VS_CONNTRACK])
        if tracking and not self.conntrack.admit(flow, now):
            return Delivery(Outcome.CONNTRACK_FULL)
        connection = self._connections.get(flow)
        rescheduled = False
        if connection is not None and not self._available(connection):
            if not self._vs_sysctls[names.EXPIRE_NODEST_CONN]:
                return Delivery(Outcome.DROPPED_NO_DESTINATION)  # A, D4: timer not restarted
            self._expire(flow, connection)
            if self.config.kernel_version < NODEST_FLUSH_KERNEL:
                return Delivery(Outcome.DROPPED_NO_DESTINATION)  # pre-5.9: first packet lost
            connection, rescheduled = None, True  # D2
        if connection is None:
            key = ServiceKey(L4Protocol.UDP, vip, port)
            service = self._services.get(key)
            if service is None:
                return Delivery(Outcome.NO_SERVICE)
            destination = _round_robin(service)
            if destination is None:
                return Delivery(Outcome.NO_REAL_SERVER)
            connection = Connection(key, destination, expires_at=now, tracked=tracking)
            self._connections[flow] = connection
        connection.expires_at = now + self._timeouts.udp  # D1: current timeout, per forwarded packet
        answered = connection.destination.ip in self.alive
        if connection.tracked:
            self.conntrack.track(flow, connection.destination, answered, now)
        outcome = Outcome.ANSWERED if answered else Outcome.BACKEND_DEAD
        return Delivery(outcome, connection.destination, rescheduled)

    def _deliver_iptables(self, flow: FlowKey, key: ServiceKey, now: float) -> Delivery:
        entry = self.conntrack.lookup(flow, now)
        if entry is not None:
            destination = entry.reply_source  # F5: the entry pins the flow, rules notwithstanding
        else:
            service = self._services.get(key)
            if service is None:
                return Delivery(Outcome.NO_SERVICE)
            chosen = _round_robin(service)
            if chosen is None:
                return Delivery(Outcome.NO_REAL_SERVER)
            if not self.conntrack.admit(flow, now):
                return Delivery(Outcome.CONNTRACK_FULL)
            destination = chosen
        answered = destination.ip in self.alive
        self.conntrack.track(flow, destination, answered, now)
        return Delivery(Outcome.ANSWERED if answered else Outcome.BACKEND_DEAD, destination)


def _round_robin(service: _Service) -> Endpoint | None:
    candidates = list(service.real_servers.items())
    for step in range(len(candidates)):
        index = (service.cursor + step) % len(candidates)
        endpoint, weight = candidates[index]
        if weight > 0:
            service.cursor = index + 1
            return endpoint
    return None


def _proc_address(ip: IPAddress) -> str:
    return f"{int(ip):08X}" if ip.version == 4 else ip.exploded
