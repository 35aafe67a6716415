"""Domain types of the node's dataplane, independent of netlink and of the Kubernetes API.

The kernel adapters (``ipvs``, ``conntrack``, ``sysctl``, ``procfs``) and the modelled
dataplane (``model``) speak these types, so the agent and the differential tests can use
either one through the protocols below.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class L4Protocol(enum.StrEnum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


@dataclass(frozen=True)
class ServiceKey:
    """One IPVS virtual service: protocol, virtual IP and port."""

    protocol: L4Protocol
    vip: IPAddress
    port: int

    def sort_key(self) -> tuple[str, int, int, int]:
        """IPv4 before IPv6: the addresses themselves do not compare across families."""
        return (str(self.protocol), self.vip.version, int(self.vip), self.port)

    def __str__(self) -> str:
        host = f"[{self.vip}]" if self.vip.version == 6 else str(self.vip)
        return f"{host}:{self.port}/{self.protocol}"


@dataclass(frozen=True)
class Endpoint:
    """A backend address as IPVS sees it: a real server's IP and port."""

    ip: IPAddress
    port: int

    def sort_key(self) -> tuple[int, int, int]:
        return (self.ip.version, int(self.ip), self.port)

    def __str__(self) -> str:
        host = f"[{self.ip}]" if self.ip.version == 6 else str(self.ip)
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class RealServer:
    endpoint: Endpoint
    weight: int
    active_conns: int = 0
    inactive_conns: int = 0


@dataclass(frozen=True)
class VirtualService:
    key: ServiceKey
    scheduler: str
    real_servers: tuple[RealServer, ...] = ()


@dataclass(frozen=True)
class IPVSTimeouts:
    """IPVS connection timeouts in seconds (IPVS_CMD_GET_CONFIG / IPVS_CMD_SET_CONFIG).

    A value of 0 in a SET request means "leave unchanged", as in ``ipvsadm --set``.
    """

    tcp: int
    tcp_fin: int
    udp: int


@dataclass(frozen=True)
class ConnectionCounts:
    """Connections of one virtual service to one destination, from the IPVS connection table."""

    service: ServiceKey
    destination: Endpoint
    count: int


@dataclass(frozen=True)
class ConntrackStats:
    count: int
    max: int
    drops: int | None = None
    insert_failed: int | None = None
    early_drops: int | None = None


class DataplaneError(Exception):
    """A dataplane operation failed; the message says which and why."""


class DataplanePermissionError(DataplaneError):
    """The kernel refused the operation for lack of privilege (EPERM/EACCES, read-only file)."""


class DataplaneUnavailableError(DataplaneError):
    """The kernel surface is absent: IPVS or conntrack not loaded, sysctl file missing."""


class IPVSAbsentError(DataplaneUnavailableError):
    """The kernel has no IPVS at all (its generic netlink family is missing): iptables or nftables mode."""


class IPVSAdapter(Protocol):
    """Virtual services, real servers and timeouts of the node's IPVS table."""

    def list_services(self) -> list[VirtualService]: ...

    def get_services(self, keys: Collection[ServiceKey]) -> list[VirtualService]:
        """These virtual services (the absent ones left out), at a cost that follows ``keys``."""
        ...

    def remove_real_server(self, service: ServiceKey, endpoint: Endpoint) -> bool:
        """Delete one real server; True if it was present, False if already absent."""
        ...

    def flush_dead_real_server(self, service: ServiceKey, endpoint: Endpoint) -> None:
        """Row D3 of docs/kernel.md: re-add the dead real server with weight 0 and delete it at once.

        With net.ipv4.vs.expire_nodest_conn=1 the kernel (>= 5.9) then expires every
        connection entry to it without waiting for a packet.
        """
        ...

    def get_timeouts(self) -> IPVSTimeouts: ...

    def set_timeouts(self, timeouts: IPVSTimeouts) -> None: ...


class ConnectionTable(Protocol):
    """The IPVS connection table aggregated per virtual service and destination."""

    def connection_counts(self, services: Collection[ServiceKey] | None = None) -> list[ConnectionCounts]:
        """Counts per virtual service and destination; with ``services``, of those only."""
        ...


class ConntrackAdapter(Protocol):
    def stats(self) -> ConntrackStats: ...

    def delete_udp_entries(self, vip: IPAddress, port: int, backend: IPAddress) -> int:
        """Delete the UDP entries to vip:port whose reply source is backend; return how many."""
        ...

    def reply_sources(self, vip: IPAddress, port: int) -> dict[Endpoint, int]:
        """The UDP entries to vip:port, counted by the endpoint that answers them; entries that
        were never DNATed are left out. Where there is no IPVS, this is how many flows each
        backend holds."""
        ...


class SysctlAdapter(Protocol):
    def read(self, name: str) -> int:
        """Read an integer sysctl such as ``net.ipv4.vs.expire_nodest_conn``."""
        ...

    def write(self, name: str, value: int) -> None: ...
