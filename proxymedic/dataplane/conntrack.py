"""nf_conntrack over ctnetlink: the one typed place where ProxyMedic talks to pyroute2's conntrack.

Deleting stale UDP entries (F5 in docs/architecture.md) is a filtered dump followed by one delete per
entry, keyed by its original tuple:

* the dump is filtered in the kernel with CTA_FILTER on BOTH directions at once: the
  original tuple (UDP, destination VIP, destination port) and the reply tuple (source =
  the dead backend). Linux 6.1 supports this (CTA_FILTER since 5.8; reply-direction
  matching fixed since); pyroute2's ``dump()`` only sends one direction, so the request
  is built here;
* measured on Linux 6.1 for IPv6: a CTA_FILTER that names an address (original destination
  or reply source) does not return entries that match it, while protocol and port filters
  work. So for IPv6 the kernel filters on UDP and the destination port, and the VIP and the
  backend are matched in user space;
* every entry returned is checked again in user space, so an older kernel that ignores
  part of the filter can only make the dump larger, never make a wrong entry go;
* ctnetlink in 6.1 has no filtered delete (a flush takes a mark only), so each entry is
  deleted by its original tuple. The delete requests are packed here and sent in batches of
  ``_DELETE_BATCH`` per datagram (pyroute2's generic encoder costs more Python time per
  request than the kernel spends deleting). An entry that vanished in between (ENOENT) is
  not counted.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_CTNETLINK
from pyroute2.netlink.nfnetlink.nfctsocket import (
    IPCTNL_MSG_CT_GET,
    NFCTAttrTuple,
    NFCTSocket,
    nfct_msg,
)

from proxymedic.dataplane.ipvs import map_netlink_error
from proxymedic.dataplane.types import (
    ConntrackStats,
    DataplaneError,
    Endpoint,
    IPAddress,
)

__all__ = ["ConntrackUDPEntry", "NetlinkConntrack"]

_PROC_SYS = Path("/proc/sys/net/netfilter")
#: Delete requests per datagram (the kernel answers each with its own ACK).
_DELETE_BATCH = 256


@dataclass(frozen=True)
class ConntrackUDPEntry:
    """One UDP conntrack entry as seen through ctnetlink (original and reply tuples)."""

    orig_src: IPAddress
    orig_dst: IPAddress
    orig_sport: int
    orig_dport: int
    reply_src: IPAddress
    reply_sport: int


_NETLINK_NETFILTER = 12
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLM_F_REQUEST, _NLM_F_ACK = 0x1, 0x4
_NLA_F_NESTED = 0x8000
_CT_DELETE = (1 << 8) | 2  # NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE
_CTA_TUPLE_ORIG, _CTA_TUPLE_REPLY, _CTA_TUPLE_IP, _CTA_TUPLE_PROTO = 1, 2, 1, 2
_CTA_PROTO_NUM, _CTA_PROTO_SRC_PORT, _CTA_PROTO_DST_PORT = 1, 2, 3


def _nla(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def _delete_request(seq: int, entry: ConntrackUDPEntry) -> bytes:
    """IPCTNL_MSG_CT_DELETE keyed by the original tuple (what pyroute2 would send, minus its cost)."""
    v6 = entry.orig_src.version == 6
    src_attr, dst_attr = (3, 4) if v6 else (1, 2)  # CTA_IP_V6_SRC/DST, CTA_IP_V4_SRC/DST
    ip = _nla(src_attr, entry.orig_src.packed) + _nla(dst_attr, entry.orig_dst.packed)
    proto = (
        _nla(_CTA_PROTO_NUM, bytes([socket.IPPROTO_UDP]))
        + _nla(_CTA_PROTO_SRC_PORT, struct.pack("!H", entry.orig_sport))
        + _nla(_CTA_PROTO_DST_PORT, struct.pack("!H", entry.orig_dport))
    )
    tup = _nla(_CTA_TUPLE_IP | _NLA_F_NESTED, ip) + _nla(_CTA_TUPLE_PROTO | _NLA_F_NESTED, proto)
    body = struct.pack("!BBH", socket.AF_INET6 if v6 else socket.AF_INET, 0, 0)
    body += _nla(_CTA_TUPLE_ORIG | _NLA_F_NESTED, tup)
    return struct.pack("=IHHII", 16 + len(body), _CT_DELETE, _NLM_F_REQUEST | _NLM_F_ACK, seq, 0) + body


def _nlas(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type without flags, payload start, payload end) of each attribute in data[start:end]."""
    while start + 4 <= end:
        length, kind = struct.unpack_from("=HH", data, start)
        if length < 4:
            return
        yield kind & 0x3FFF, start + 4, start + length
        start += (length + 3) & ~3


def _parse_tuple(data: bytes, start: int, end: int) -> tuple[IPAddress, IPAddress, int, int, int] | None:
    """(src, dst, proto, sport, dport) of a nested CTA_TUPLE_*; None if incomplete."""
    src = dst = None
    proto = sport = dport = None
    for kind, a, b in _nlas(data, start, end):
        if kind == _CTA_TUPLE_IP:
            for ip_kind, c, d in _nlas(data, a, b):
                if ip_kind in (1, 3):  # CTA_IP_V4_SRC, CTA_IP_V6_SRC
                    src = ipaddress.ip_address(data[c:d])
                elif ip_kind in (2, 4):  # CTA_IP_V4_DST, CTA_IP_V6_DST
                    dst = ipaddress.ip_address(data[c:d])
        elif kind == _CTA_TUPLE_PROTO:
            for p_kind, c, _d in _nlas(data, a, b):
                if p_kind == _CTA_PROTO_NUM:
                    proto = data[c]
                elif p_kind == _CTA_PROTO_SRC_PORT:
                    (sport,) = struct.unpack_from("!H", data, c)
                elif p_kind == _CTA_PROTO_DST_PORT:
                    (dport,) = struct.unpack_from("!H", data, c)
    if src is None or dst is None or proto is None or sport is None or dport is None:
        return None
    return src, dst, proto, sport, dport


class _Ctnetlink:
    """A bare NETLINK_NETFILTER socket for the two hot paths: the filtered dump and the deletes.

    pyroute2 builds the dump request (its CTA_FILTER encoding); decoding the answers and
    encoding the deletes here avoids pyroute2's per-message Python cost, which at tens of
    thousands of entries is far larger than the kernel's work.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.sock.bind((0, 0))

    def close(self) -> None:
        self.sock.close()

    def _messages(self) -> Iterator[tuple[int, bytes, int, int]]:
        """(type, datagram, payload start, payload end) of every message received, until DONE."""
        while True:
            data = self.sock.recv(1 << 20)
            offset = 0
            while offset + 16 <= len(data):
                length, kind, _flags, _seq, _pid = struct.unpack_from("=IHHII", data, offset)
                if length < 16:
                    break
                if kind == _NLMSG_DONE:
                    return
                yield kind, data, offset + 16, offset + length
                offset += (length + 3) & ~3

    def dump(self, request: bytes) -> Iterator[tuple[tuple[IPAddress, IPAddress, int, int, int], ...]]:
        """Send a dump request; yield (original tuple, reply tuple) of each entry."""
        self.sock.sendall(request)
        for kind, data, start, end in self._messages():
            if kind == _NLMSG_ERROR:
                (err,) = struct.unpack_from("=i", data, start)
                if err:
                    raise OSError(-err, os.strerror(-err))
                continue
            orig = reply = None
            for attr, a, b in _nlas(data, start + 4, end):  # after struct nfgenmsg
                if attr == _CTA_TUPLE_ORIG:
                    orig = _parse_tuple(data, a, b)
                elif attr == _CTA_TUPLE_REPLY:
                    reply = _parse_tuple(data, a, b)
            if orig is not None and reply is not None:
                yield orig, reply

    def delete(self, entries: list[ConntrackUDPEntry], op: str) -> int:
        """Delete by original tuple, ``_DELETE_BATCH`` requests per datagram; count successful ACKs.

        ENOENT (the entry expired meanwhile) is not counted; other errors raise.
        """
        deleted = 0
        for start in range(0, len(entries), _DELETE_BATCH):
            batch = entries[start : start + _DELETE_BATCH]
            self.sock.sendall(b"".join(_delete_request(start + i + 1, e) for i, e in enumerate(batch)))
            pending = len(batch)
            while pending:
                data = self.sock.recv(1 << 20)
                offset = 0
                while offset + 20 <= len(data):
                    length, kind, _flags, _seq, _pid = struct.unpack_from("=IHHII", data, offset)
                    if kind == _NLMSG_ERROR:
                        (err,) = struct.unpack_from("=i", data, offset + 16)
                        pending -= 1
                        if err == 0:
                            deleted += 1
                        elif -err != errno.ENOENT:
                            raise map_netlink_error(OSError(-err, os.strerror(-err)), op)
                    offset += (length + 3) & ~3 if length >= 16 else len(data)
        return deleted


def _family(ip: IPAddress) -> int:
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


class NetlinkConntrack:
    """ConntrackAdapter over pyroute2's ctnetlink socket (NETLINK_NETFILTER).

    ``proc_sys`` is the directory holding nf_conntrack_count / nf_conntrack_max, used when
    the netlink statistics request is refused or unavailable.
    """

    def __init__(
        self,
        socket_factory: Callable[[int], Any] | None = None,
        proc_sys: Path = _PROC_SYS,
    ) -> None:
        self._factory: Callable[[int], Any] = socket_factory or (lambda fam: NFCTSocket(nfgen_family=fam))
        self._proc_sys = proc_sys

    @contextmanager
    def _socket(self, family: int, operation: str) -> Iterator[Any]:
        try:
            sock = self._factory(family)
        except (NetlinkError, OSError) as exc:
            raise map_netlink_error(exc, f"{operation}: open ctnetlink socket") from exc
        try:
            yield sock
        finally:
            sock.close()

    @contextmanager
    def _raw(self, operation: str) -> Iterator[_Ctnetlink]:
        try:
            ct = _Ctnetlink()
        except OSError as exc:
            raise map_netlink_error(exc, f"{operation}: open ctnetlink socket") from exc
        try:
            yield ct
        except OSError as exc:
            raise map_netlink_error(exc, operation) from exc
        finally:
            ct.close()

    # --- statistics -----------------------------------------------------------------------

    def stats(self) -> ConntrackStats:
        """Entry count and table size (IPCTNL_MSG_CT_GET_STATS), plus per-CPU drop counters.

        Falls back to /proc/sys/net/netfilter for count and max if netlink fails.
        """
        op = "read conntrack statistics"
        try:
            with self._socket(socket.AF_INET, op) as ct:
                glob = list(ct.count())
                if not glob:
                    raise DataplaneError(f"{op}: no IPCTNL_MSG_CT_GET_STATS reply")
                count = glob[0].get_attr("CTA_STATS_GLOBAL_ENTRIES")
                maximum = glob[0].get_attr("CTA_STATS_GLOBAL_MAX_ENTRIES")
                per_cpu = list(ct.stat())
        except (NetlinkError, OSError) as exc:
            return self._stats_from_proc(map_netlink_error(exc, op))
        except DataplaneError as exc:
            return self._stats_from_proc(exc)
        if count is None or maximum is None:
            return self._stats_from_proc(DataplaneError(f"{op}: incomplete reply"))

        def total(name: str) -> int:
            return sum(int(msg.get_attr(name) or 0) for msg in per_cpu)

        return ConntrackStats(
            count=int(count),
            max=int(maximum),
            drops=total("CTA_STATS_DROP"),
            insert_failed=total("CTA_STATS_INSERT_FAILED"),
            early_drops=total("CTA_STATS_EARLY_DROP"),
        )

    def _stats_from_proc(self, cause: DataplaneError) -> ConntrackStats:
        try:
            count = int((self._proc_sys / "nf_conntrack_count").read_text())
            maximum = int((self._proc_sys / "nf_conntrack_max").read_text())
        except (OSError, ValueError) as exc:
            raise type(cause)(f"{cause}; /proc fallback failed: {exc}") from exc
        return ConntrackStats(count=count, max=maximum)

    # --- stale UDP entries (F5) ---------------------------------------------------------------

    def list_udp_entries(
        self, vip: IPAddress, port: int, backend: IPAddress | None = None
    ) -> list[ConntrackUDPEntry]:
        """UDP entries whose original destination is vip:port (and reply source is backend)."""
        op = f"list UDP conntrack entries to {vip}:{port}"
        with self._raw(op) as ct:
            return list(self._matching(ct, vip, port, backend))

    def _matching(
        self, ct: _Ctnetlink, vip: IPAddress, port: int, backend: IPAddress | None
    ) -> Iterator[ConntrackUDPEntry]:
        family = _family(vip)
        v6 = vip.version == 6
        # IPv6: no addresses in the kernel filter (Linux 6.1 then matches nothing, see module doc).
        orig = NFCTAttrTuple(
            family=family, daddr=None if v6 else str(vip), proto=socket.IPPROTO_UDP, dport=port
        )
        orig.attrs()  # computes .flags
        filters: list[list[Any]] = [["CTA_FILTER_ORIG_FLAGS", orig.flags]]
        kwargs: dict[str, Any] = {"tuple_orig": orig}
        if backend is not None and not v6:
            reply = NFCTAttrTuple(family=family, saddr=str(backend), proto=socket.IPPROTO_UDP)
            reply.attrs()
            filters.append(["CTA_FILTER_REPLY_FLAGS", reply.flags])
            kwargs["tuple_reply"] = reply
        msg = nfct_msg.create_from(cta_filter={"attrs": filters}, **kwargs)
        msg["nfgen_family"] = family
        msg["header"]["type"] = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_DUMP
        msg["header"]["sequence_number"] = 1
        msg.encode()
        for o, r in ct.dump(bytes(msg.data)):
            entry = ConntrackUDPEntry(o[0], o[1], o[3], o[4], r[0], r[3])
            # Defence in depth: the kernel filter narrows the dump, this check decides.
            if o[2] != socket.IPPROTO_UDP or entry.orig_dst != vip or entry.orig_dport != port:
                continue
            if backend is not None and entry.reply_src != backend:
                continue
            yield entry

    def reply_sources(self, vip: IPAddress, port: int) -> dict[Endpoint, int]:
        """UDP entries to vip:port by the endpoint that answers them (the reply tuple's source).

        Entries whose reply comes from vip:port itself were never DNATed (no rule took them:
        a Service with no endpoints, traffic rejected) and are left out.
        """
        op = f"count UDP conntrack entries to {vip}:{port}"
        counts: dict[Endpoint, int] = {}
        with self._raw(op) as ct:
            for entry in self._matching(ct, vip, port, None):
                if entry.reply_src == vip and entry.reply_sport == port:
                    continue
                source = Endpoint(entry.reply_src, entry.reply_sport)
                counts[source] = counts.get(source, 0) + 1
        return counts

    def delete_udp_entries(self, vip: IPAddress, port: int, backend: IPAddress) -> int:
        """F5: delete the UDP entries to vip:port whose reply source is backend.

        Entries to the same VIP answered by any other backend are left alone. Returns the
        number of entries this call deleted.
        """
        if vip.version != backend.version:
            raise ValueError(f"address families differ: VIP {vip}, backend {backend}")
        op = f"delete UDP conntrack entries {vip}:{port} -> {backend}"
        with self._raw(op) as ct:
            return ct.delete(list(self._matching(ct, vip, port, backend)), op)
