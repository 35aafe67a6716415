"""IPVS over generic netlink: the one typed place where ProxyMedic talks to pyroute2's IPVS.

Verbs used, each pinned by a real-kernel test in ``tests/kernel``:

* ``service("dump")`` / ``dest("dump")``: IPVS_CMD_GET_SERVICE / IPVS_CMD_GET_DEST dumps;
* ``dest("add")``: IPVS_CMD_NEW_DEST; ``dest("set")``: IPVS_CMD_SET_DEST;
  ``dest("del")``: IPVS_CMD_DEL_DEST. pyroute2's ``update`` verb maps to a *delete*
  command and is never used here;
* raw ``IPVS_CMD_GET_CONFIG`` / ``IPVS_CMD_SET_CONFIG`` messages for the timeouts (the
  kernel answers with three little-endian u32 attributes that pyroute2 decodes as ``hex``;
  a SET request carries them as raw 4-byte values).

One socket serves every call, opened on first use and kept: opening one costs a generic
netlink family lookup, more than a small request itself. pyroute2 ties a socket to the thread
that opened it, so every call runs on the adapter's own thread, which lives in the network
namespace of the thread that built the adapter. A socket that fails is closed and the next call
opens a new one; a read that fails on a socket that served before is retried once on a new one,
which is what a module reload (a new generic netlink family id) needs.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import struct
import threading
import weakref
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pyroute2.ipvs import IPVS, IPVSDest, IPVSService
from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import ipvs as genl_ipvs

from proxymedic.dataplane.types import (
    DataplaneError,
    DataplanePermissionError,
    DataplaneUnavailableError,
    Endpoint,
    IPVSAbsentError,
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


def _open_error(exc: BaseException, operation: str) -> DataplaneError:
    """The error of opening IPVS's generic netlink family: a missing family is no IPVS at all.

    Made here, not in a local of the raising frame (which makes the exception and the frame a
    reference cycle): with the local, the reliability suite's netlink-error tests hung starting a
    thread; without it, they pass."""
    error = map_netlink_error(exc, f"{operation}: open IPVS generic netlink family")
    return IPVSAbsentError(str(error)) if isinstance(error, DataplaneUnavailableError) else error


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


def _thread_netns() -> tuple[int, int]:
    """(device, inode) of the calling thread's network namespace."""
    st = os.stat("/proc/thread-self/ns/net")
    return st.st_dev, st.st_ino


def _setns_net(fd: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


_Fn = Callable[[Any], _T]


class _WorkerThread:
    """The adapter's thread and the socket it owns, apart from the adapter: the thread and the
    finalizer that closes the socket hold this, never the adapter itself."""

    ident: int | None = None
    sock: Any = None

    def drop(self) -> None:
        if self.sock is not None:
            sock, self.sock = self.sock, None
            with contextlib.suppress(Exception):  # a broken socket's close must not hide what broke it
                sock.close()


def _retire(worker: ThreadPoolExecutor, thread: _WorkerThread) -> None:
    """When the adapter is collected: close its socket on its own thread, then let the thread end."""
    with contextlib.suppress(RuntimeError):  # the interpreter is shutting down: the OS closes it
        worker.submit(thread.drop)
    worker.shutdown(wait=False)


def _enter_home(thread: _WorkerThread, home: tuple[int, int] | None, home_fd: int | None) -> None:
    """Run on the adapter's thread once: join the builder's namespace if the thread is elsewhere
    (the agent's never is; a test that moved its own thread into a node namespace is)."""
    thread.ident = threading.get_ident()
    if home_fd is not None and _thread_netns() != home:
        _setns_net(home_fd)


class NetlinkIPVS:
    """IPVSAdapter over pyroute2's generic netlink IPVS socket.

    ``socket_factory`` exists for tests that need a socket in another network namespace;
    the default opens ``pyroute2.IPVS()`` in the namespace of the thread that built the adapter.
    """

    def __init__(self, socket_factory: Callable[[], Any] | None = None) -> None:
        self._factory: Callable[[], Any] = socket_factory or IPVS
        self._served = False
        self.sockets_opened = 0
        """How many sockets this adapter has opened: 1 for its whole life unless one failed."""
        home: tuple[int, int] | None = None
        home_fd: int | None = None
        try:
            home = _thread_netns()
            home_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            weakref.finalize(self, os.close, home_fd)
        except OSError:
            pass  # no procfs: the worker stays where threads start, the process's namespace
        self._thread = _WorkerThread()
        # The initializer holds no reference to the adapter: an adapter nobody uses any more is
        # collected, and its idle thread then ends.
        self._worker = ThreadPoolExecutor(
            1, "ipvs-netlink", initializer=_enter_home, initargs=(self._thread, home, home_fd)
        )
        self._retired = weakref.finalize(self, _retire, self._worker, self._thread)

    def close(self) -> None:
        """Close the socket and stop the adapter's thread: the adapter is not used after this."""
        self._retired.detach()
        if self._thread.ident is not None:
            self._worker.submit(self._thread.drop).result()
        self._worker.shutdown(wait=True)

    def _session(self, operation: str, fn: _Fn[_T], *, read_only: bool) -> _T:
        """Run ``fn(socket)`` on the adapter's thread with its long-lived socket."""
        if threading.get_ident() == self._thread.ident:
            return self._with_socket(operation, fn, read_only)
        return self._worker.submit(self._with_socket, operation, fn, read_only).result()

    def _with_socket(self, operation: str, fn: _Fn[_T], read_only: bool) -> _T:
        thread = self._thread
        while True:
            if thread.sock is None:
                try:
                    thread.sock = self._factory()
                except (NetlinkError, OSError) as exc:
                    raise _open_error(exc, operation) from exc
                self._served = False
                self.sockets_opened += 1
            served = self._served
            try:
                result = fn(thread.sock)
            except Exception:
                thread.drop()
                if read_only and served:
                    continue  # a socket that served before may be stale: one more try on a new one
                raise
            self._served = True
            return result

    def _call(self, operation: str, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except (NetlinkError, OSError) as exc:
            raise map_netlink_error(exc, operation) from exc

    # --- listing ------------------------------------------------------------------------

    def list_services(self) -> list[VirtualService]:
        """All address-based virtual services with their real servers (fwmark services skipped)."""

        def dump(ipvs: Any) -> list[VirtualService]:
            out: list[VirtualService] = []
            for msg in self._call("dump IPVS services", lambda: list(ipvs.service("dump"))):
                svc = _attr(msg, "IPVS_CMD_ATTR_SERVICE")
                key = self._service_key(svc)
                if key is None:
                    continue
                sched = str(_attr(svc, "IPVS_SVC_ATTR_SCHED_NAME") or "")
                dests = self._dump_dests(ipvs, key)
                out.append(VirtualService(key, sched, tuple(self._real_server(d) for d in dests)))
            return out

        # ServiceKey's own ordering cannot compare an IPv4 with an IPv6 address.
        return sorted(
            self._session("list IPVS services", dump, read_only=True), key=lambda vs: vs.key.sort_key()
        )

    def get_services(self, keys: Collection[ServiceKey]) -> list[VirtualService]:
        """These virtual services with their real servers, the absent ones left out.

        One IPVS_CMD_GET_SERVICE and one real-server dump per key: the cost follows the keys asked
        for, not the size of the node's table.
        """

        def get(ipvs: Any) -> list[VirtualService]:
            out: list[VirtualService] = []
            for key in keys:
                try:
                    replies = list(ipvs.service("get", service=_service_obj(key)))
                except NetlinkError as exc:
                    if exc.code in (errno.ESRCH, errno.ENOENT):
                        continue  # IPVS answers ESRCH for a service it does not have
                    raise map_netlink_error(exc, f"get IPVS service {key}") from exc
                if not replies:
                    continue
                svc = _attr(replies[0], "IPVS_CMD_ATTR_SERVICE")
                sched = str(_attr(svc, "IPVS_SVC_ATTR_SCHED_NAME") or "") if svc is not None else ""
                try:
                    dests = list(ipvs.dest("dump", service=_service_obj(key)))
                except NetlinkError as exc:
                    if exc.code in (errno.ESRCH, errno.ENOENT):
                        continue  # deleted between the two requests
                    raise map_netlink_error(exc, f"dump real servers of {key}") from exc
                out.append(VirtualService(key, sched, tuple(self._real_server(d) for d in dests)))
            return out

        found = self._session(f"get {len(keys)} IPVS services", get, read_only=True)
        return sorted(found, key=lambda vs: vs.key.sort_key())

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

    # --- repairs ------------------------------------------------------------------------

    def remove_real_server(self, service: ServiceKey, endpoint: Endpoint) -> bool:
        """F2 (docs/architecture.md): delete one real server. True if removed, False if it was absent.

        The virtual service missing is also "absent" (False): there is nothing to remove.
        """
        op = f"remove real server {endpoint} from {service}"

        def remove(ipvs: Any) -> bool:
            try:
                ipvs.dest("del", service=_service_obj(service), dest=_dest_obj(endpoint, 0))
            except NetlinkError as exc:
                # IPVS answers ENOENT for an unknown real server, ESRCH for an unknown service.
                if exc.code in (errno.ENOENT, errno.ESRCH):
                    return False
                raise map_netlink_error(exc, op) from exc
            return True

        return self._session(op, remove, read_only=False)

    def set_weight(self, service: ServiceKey, endpoint: Endpoint, weight: int) -> None:
        """Change a real server's weight in place (IPVS_CMD_SET_DEST via pyroute2's ``set``).

        Weight 0 quiesces it: existing entries stay, nothing new is scheduled to it.
        """
        op = f"set weight {weight} on real server {endpoint} of {service}"
        self._session(
            op,
            lambda ipvs: self._call(
                op, lambda: ipvs.dest("set", service=_service_obj(service), dest=_dest_obj(endpoint, weight))
            ),
            read_only=False,
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
        That ``set`` is also how it finds out whether the real server is there (ENOENT: it is
        not), two or three requests in all and no dump of the service's real servers.
        Raises DataplaneUnavailableError if the virtual service does not exist.
        """
        op = f"flush dead real server {endpoint} of {service}"

        def flush(ipvs: Any) -> None:
            svc = _service_obj(service)
            # Weight 0 first, without a dump to find it: no new flow lands on a present real server
            # in between, and ENOENT says it is gone already.
            try:
                ipvs.dest("set", service=svc, dest=_dest_obj(endpoint, 0))
            except NetlinkError as exc:
                if exc.code == errno.ESRCH:
                    raise DataplaneUnavailableError(f"{op}: no such virtual service") from exc
                if exc.code != errno.ENOENT:
                    raise map_netlink_error(exc, f"{op}: set weight 0") from exc
                try:
                    ipvs.dest("add", service=svc, dest=_dest_obj(endpoint, 0))
                except NetlinkError as add_exc:
                    if add_exc.code == errno.ESRCH:
                        raise DataplaneUnavailableError(f"{op}: no such virtual service") from add_exc
                    raise map_netlink_error(add_exc, f"{op}: re-add with weight 0") from add_exc
            self._call(f"{op}: delete", lambda: ipvs.dest("del", service=svc, dest=_dest_obj(endpoint, 0)))

        self._session(op, flush, read_only=False)

    # --- timeouts -----------------------------------------------------------------------

    def get_timeouts(self) -> IPVSTimeouts:
        """IPVS_CMD_GET_CONFIG: the TCP, TCP-FIN and UDP timeouts in seconds."""
        op = "read IPVS timeouts (IPVS_CMD_GET_CONFIG)"
        msg = genl_ipvs.ipvsmsg()
        msg["cmd"] = genl_ipvs.IPVS_CMD_GET_CONFIG
        msg["version"] = genl_ipvs.GENL_VERSION
        replies = self._session(
            op,
            lambda ipvs: self._call(
                op, lambda: list(ipvs.nlm_request(msg, msg_type=ipvs.prid, msg_flags=NLM_F_REQUEST))
            ),
            read_only=True,
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
        self._session(
            op,
            lambda ipvs: self._call(
                op,
                lambda: list(ipvs.nlm_request(msg, msg_type=ipvs.prid, msg_flags=NLM_F_REQUEST | NLM_F_ACK)),
            ),
            read_only=False,
        )
