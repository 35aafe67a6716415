"""IPVS over generic netlink: the one typed place where ProxyMedic talks to pyroute2's IPVS.

Verbs used, each pinned by a real-kernel test in ``tests/kernel``:

* ``service("dump")`` / ``dest("dump")``: IPVS_CMD_GET_SERVICE / IPVS_CMD_GET_DEST dumps;
* ``dest("add")``: IPVS_CMD_NEW_DEST; ``dest("set")``: IPVS_CMD_SET_DEST;
  ``dest("del")``: IPVS_CMD_DEL_DEST. pyroute2's ``update`` verb maps to a *delete*
  command and is never used here;
* raw ``IPVS_CMD_GET_CONFIG`` / ``IPVS_CMD_SET_CONFIG`` messages for the timeouts (the
  kernel answers with three little-endian u32 attributes that pyroute2 decodes as ``hex``;
  a SET request carries them as raw 4-byte values).

Every method opens its own netlink socket and closes it: the agent calls these rarely,
and a socket that outlives a network namespace or a module reload would only go stale.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pyroute2 import IPVS, IPVSDest, IPVSService
from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import ipvs as genl_ipvs

from proxymedic.dataplane.types import (
    DataplaneError,
    DataplanePermissionError,
    DataplaneUnavailableError,
    Endpoint,
    IPVSTimeouts,
    L4Protocol,
    RealServer,
    ServiceKey,
    VirtualService,
)

__all__ = ["NetlinkIPVS", "map_netlink_error"]

_T = TypeVar("_T")

#: IPVS forwarding method "masquerading" (NAT), what kube-proxy programs.
IP_VS_CONN_F_MASQ = 0

_PROTO_NUM = {L4Protocol.TCP: socket.IPPROTO_TCP, L4Protocol.UDP: socket.IPPROTO_UDP, L4Protocol.SCTP: 132}
_PROTO_BY_NUM = {num: proto for proto, num in _PROTO_NUM.items()}

_TIMEOUT_ATTRS = (
    ("tcp", "IPVS_CMD_ATTR_TIMEOUT_TCP"),
    ("tcp_fin", "IPVS_CMD_ATTR_TIMEOUT_TCP_FIN"),
    ("udp", "IPVS_CMD_ATTR_TIMEOUT_UDP"),
)


def map_netlink_error(exc: BaseException, operation: str) -> DataplaneError:
    """Translate a netlink/OS error into the dataplane's typed errors, naming the operation."""
    code = getattr(exc, "code", None)
    if code is None and isinstance(exc, OSError):
        code = exc.errno
    detail = f"{operation}: {exc}"
    if code in (errno.EPERM, errno.EACCES):
        return DataplanePermissionError(f"{detail} (needs CAP_NET_ADMIN)")
    if code in (errno.ENOENT, errno.ENOTSUP, errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT):
        return DataplaneUnavailableError(detail)
    return DataplaneError(detail)


def _u32_le(value: object) -> int:
    """Decode a timeout attribute: pyroute2 gives ``hex`` attributes as 'aa:bb:cc:dd' or bytes."""
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
    elif isinstance(value, str):
        raw = bytes.fromhex(value.replace(":", ""))
    else:
        raise DataplaneError(f"IPVS_CMD_GET_CONFIG: unexpected timeout attribute {value!r}")
    if len(raw) != 4:
        raise DataplaneError(f"IPVS_CMD_GET_CONFIG: timeout attribute of {len(raw)} bytes")
    (out,) = struct.unpack("<I", raw)
    return int(out)


def _family(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


def _service_obj(key: ServiceKey) -> Any:
    fields: dict[str, Any] = {
        "af": _family(key.vip),
        "addr": str(key.vip),
        "port": key.port,
        "protocol": _PROTO_NUM[key.protocol],
    }
    if key.vip.version == 6:
        # The kernel reads IPVS_SVC_ATTR_NETMASK as a native u32 prefix length for IPv6
        # (ipvsadm sends 128); pyroute2 encodes the attribute as an IPv4 address in network
        # order, so 128 on a little-endian host is written as "128.0.0.0".
        fields["netmask"] = str(ipaddress.IPv4Address(struct.unpack("!I", struct.pack("=I", 128))[0]))
    return IPVSService(**fields)


def _dest_obj(endpoint: Endpoint, weight: int) -> Any:
    return IPVSDest(
        addr=str(endpoint.ip),
        addr_family=_family(endpoint.ip),
        port=endpoint.port,
        fwd_method=IP_VS_CONN_F_MASQ,
        weight=weight,
    )


def _attr(msg: Any, name: str) -> Any:
    return msg.get_attr(name)


class NetlinkIPVS:
    """IPVSAdapter over pyroute2's generic netlink IPVS socket.

    ``socket_factory`` exists for tests that need a socket in another network namespace;
    the default opens ``pyroute2.IPVS()`` in the caller's namespace.
    """

    def __init__(self, socket_factory: Callable[[], Any] | None = None) -> None:
        self._factory: Callable[[], Any] = socket_factory or IPVS

    @contextmanager
    def _socket(self, operation: str) -> Iterator[Any]:
        try:
            sock = self._factory()
        except (NetlinkError, OSError) as exc:
            raise map_netlink_error(exc, f"{operation}: open IPVS generic netlink family") from exc
        try:
            yield sock
        finally:
            sock.close()

    def _call(self, operation: str, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except (NetlinkError, OSError) as exc:
            raise map_netlink_error(exc, operation) from exc

    # --- listing ------------------------------------------------------------------------

    def list_services(self) -> list[VirtualService]:
        """All address-based virtual services with their real servers (fwmark services skipped)."""
        out: list[VirtualService] = []
        with self._socket("list IPVS services") as ipvs:
            for msg in self._call("dump IPVS services", lambda: list(ipvs.service("dump"))):
                svc = _attr(msg, "IPVS_CMD_ATTR_SERVICE")
                key = self._service_key(svc)
                if key is None:
                    continue
                sched = str(_attr(svc, "IPVS_SVC_ATTR_SCHED_NAME") or "")
                dests = self._dump_dests(ipvs, key)
                out.append(VirtualService(key, sched, tuple(self._real_server(d) for d in dests)))
        # ServiceKey's own ordering cannot compare an IPv4 with an IPv6 address.
        return sorted(out, key=lambda vs: vs.key.sort_key())

    def _dump_dests(self, ipvs: Any, key: ServiceKey) -> list[Any]:
        service_obj = _service_obj(key)
        return self._call(f"dump real servers of {key}", lambda: list(ipvs.dest("dump", service=service_obj)))

    @staticmethod
    def _service_key(svc: Any) -> ServiceKey | None:
        addr = _attr(svc, "IPVS_SVC_ATTR_ADDR")
        proto = _PROTO_BY_NUM.get(_attr(svc, "IPVS_SVC_ATTR_PROTOCOL") or 0)
        if _attr(svc, "IPVS_SVC_ATTR_FWMARK") or addr is None or proto is None:
            return None
        return ServiceKey(proto, ipaddress.ip_address(addr), int(_attr(svc, "IPVS_SVC_ATTR_PORT")))

    @staticmethod
    def _real_server(msg: Any) -> RealServer:
        dest = _attr(msg, "IPVS_CMD_ATTR_DEST")
        return RealServer(
            endpoint=Endpoint(
                ipaddress.ip_address(_attr(dest, "IPVS_DEST_ATTR_ADDR")),
                int(_attr(dest, "IPVS_DEST_ATTR_PORT")),
            ),
            weight=int(_attr(dest, "IPVS_DEST_ATTR_WEIGHT") or 0),
            active_conns=int(_attr(dest, "IPVS_DEST_ATTR_ACTIVE_CONNS") or 0),
            inactive_conns=int(_attr(dest, "IPVS_DEST_ATTR_INACT_CONNS") or 0),
        )

    def _find(self, ipvs: Any, service: ServiceKey, endpoint: Endpoint) -> RealServer | None:
        """The real server as the kernel has it now, or None; ENOENT (no such service) is None."""
        try:
            dests = list(ipvs.dest("dump", service=_service_obj(service)))
        except NetlinkError as exc:
            if exc.code in (errno.ENOENT, errno.ESRCH):
                return None
            raise map_netlink_error(exc, f"dump real servers of {service}") from exc
        for msg in dests:
            rs = self._real_server(msg)
            if rs.endpoint == endpoint:
                return rs
        return None

    # --- repairs ------------------------------------------------------------------------

    def remove_real_server(self, service: ServiceKey, endpoint: Endpoint) -> bool:
        """F2 (docs/architecture.md): delete one real server. True if removed, False if it was absent.

        The virtual service missing is also "absent" (False): there is nothing to remove.
        """
        op = f"remove real server {endpoint} from {service}"
        with self._socket(op) as ipvs:
            try:
                ipvs.dest("del", service=_service_obj(service), dest=_dest_obj(endpoint, 0))
            except NetlinkError as exc:
                # IPVS answers ENOENT for an unknown real server, ESRCH for an unknown service.
                if exc.code in (errno.ENOENT, errno.ESRCH):
                    return False
                raise map_netlink_error(exc, op) from exc
        return True

    def set_weight(self, service: ServiceKey, endpoint: Endpoint, weight: int) -> None:
        """Change a real server's weight in place (IPVS_CMD_SET_DEST via pyroute2's ``set``).

        Weight 0 quiesces it: existing entries stay, nothing new is scheduled to it.
        """
        op = f"set weight {weight} on real server {endpoint} of {service}"
        with self._socket(op) as ipvs:
            self._call(
                op, lambda: ipvs.dest("set", service=_service_obj(service), dest=_dest_obj(endpoint, weight))
            )

    def flush_dead_real_server(self, service: ServiceKey, endpoint: Endpoint) -> None:
        """Row D3 of docs/kernel.md, repair F1: flush connection entries to a dead backend without a packet.

        With net.ipv4.vs.expire_nodest_conn=1 (kernel >= 5.9), deleting a real server queues
        the expiry of every connection entry still pointing at it. For a real server that is
        already gone, re-adding it (weight 0, so nothing new is scheduled to it; the kernel
        revives the same destination from its trash, still referenced by the stale entries)
        and deleting it again triggers that flush.

        The caller asserts the backend is dead (the intent lists it as dead and never as live).
        If the real server is present with weight > 0 this method still proceeds, because a
        dead backend kept in IPVS is case C (stalled kube-proxy): it first sets the weight to
        0 (``set``, IPVS_CMD_SET_DEST) so no new flow lands on it in between, then deletes it.
        Raises DataplaneUnavailableError if the virtual service does not exist.
        """
        op = f"flush dead real server {endpoint} of {service}"
        with self._socket(op) as ipvs:
            svc = _service_obj(service)
            current = self._find(ipvs, service, endpoint)
            if current is None:
                try:
                    ipvs.dest("add", service=svc, dest=_dest_obj(endpoint, 0))
                except NetlinkError as exc:
                    if exc.code == errno.ESRCH:
                        raise DataplaneUnavailableError(f"{op}: no such virtual service") from exc
                    raise map_netlink_error(exc, f"{op}: re-add with weight 0") from exc
            elif current.weight != 0:
                self._call(
                    f"{op}: set weight 0",
                    lambda: ipvs.dest("set", service=svc, dest=_dest_obj(endpoint, 0)),
                )
            self._call(f"{op}: delete", lambda: ipvs.dest("del", service=svc, dest=_dest_obj(endpoint, 0)))

    # --- timeouts -----------------------------------------------------------------------

    def get_timeouts(self) -> IPVSTimeouts:
        """IPVS_CMD_GET_CONFIG: the TCP, TCP-FIN and UDP timeouts in seconds."""
        op = "read IPVS timeouts (IPVS_CMD_GET_CONFIG)"
        with self._socket(op) as ipvs:
            msg = genl_ipvs.ipvsmsg()
            msg["cmd"] = genl_ipvs.IPVS_CMD_GET_CONFIG
            msg["version"] = genl_ipvs.GENL_VERSION
            replies = self._call(
                op, lambda: list(ipvs.nlm_request(msg, msg_type=ipvs.prid, msg_flags=NLM_F_REQUEST))
            )
        if not replies:
            raise DataplaneError(f"{op}: no reply")
        values = {field: _u32_le(replies[0].get_attr(attr)) for field, attr in _TIMEOUT_ATTRS}
        return IPVSTimeouts(**values)

    def set_timeouts(self, timeouts: IPVSTimeouts) -> None:
        """IPVS_CMD_SET_CONFIG; a field of 0 leaves that timeout unchanged (as ``ipvsadm --set``).

        Lowering the UDP timeout bounds NEW entries only (docs/kernel.md, row D1).
        """
        for field, _ in _TIMEOUT_ATTRS:
            value = getattr(timeouts, field)
            if not 0 <= value <= 0xFFFFFFFF:
                raise ValueError(f"IPVS {field} timeout out of range: {value}")
        op = f"set IPVS timeouts {timeouts} (IPVS_CMD_SET_CONFIG)"
        msg = genl_ipvs.ipvsmsg()
        msg["cmd"] = genl_ipvs.IPVS_CMD_SET_CONFIG
        msg["version"] = genl_ipvs.GENL_VERSION
        msg["attrs"] = [
            (attr, struct.pack("<I", getattr(timeouts, field)))
            for field, attr in _TIMEOUT_ATTRS
            if getattr(timeouts, field)
        ]
        if not msg["attrs"]:
            return
        with self._socket(op) as ipvs:
            self._call(
                op,
                lambda: list(ipvs.nlm_request(msg, msg_type=ipvs.prid, msg_flags=NLM_F_REQUEST | NLM_F_ACK)),
            )
