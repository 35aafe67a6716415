"""nf_conntrack over ctnetlink: the one typed place where ProxyMedic talks to pyroute2's conntrack.

Deleting stale UDP entries (DESIGN §4 F5) is a filtered dump followed by one delete per
entry, keyed by its original tuple:

* the dump is filtered in the kernel with CTA_FILTER on BOTH directions at once: the
  original tuple (UDP, destination VIP, destination port) and the reply tuple (source =
  the dead backend). Linux 6.1 supports this (CTA_FILTER since 5.8; reply-direction
  matching fixed since); pyroute2's ``dump()`` only sends one direction, so the request
  is built here;
* measured on Linux 6.1 for IPv6: a CTA_FILTER on the original destination ADDRESS matches
  nothing, and so does an original-tuple filter combined with a reply-tuple filter; a
  reply-only filter (source address and protocol) and an original filter on protocol and
  port alone do work. So for IPv6 the kernel filters on the reply source (or on protocol
  and port when no backend is given), and the VIP and port are matched in user space;
* every entry returned is checked again in user space, so an older kernel that ignores
  part of the filter can only make the dump larger, never make a wrong entry go;
* ctnetlink in 6.1 has no filtered delete (a flush takes a mark only), so each entry is
  deleted by its original tuple; the deletes are pipelined on pyroute2's asyncio core (up to
  ``_DELETE_BATCH`` in flight) instead of one round trip each. An entry that vanished in
  between (ENOENT) is not counted.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
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
    IPAddress,
)

__all__ = ["ConntrackUDPEntry", "NetlinkConntrack"]

_PROC_SYS = Path("/proc/sys/net/netfilter")
#: Deletes in flight at once on one socket (each is a small request; the ACKs come back in order).
_DELETE_BATCH = 256


async def _delete_many(core: Any, keys: list[Any]) -> list[object]:
    """Pipeline IPCTNL_MSG_CT_DELETE requests on pyroute2's async core; one outcome per key."""
    return list(
        await asyncio.gather(*(core.entry("del", tuple_orig=key) for key in keys), return_exceptions=True)
    )


@dataclass(frozen=True)
class ConntrackUDPEntry:
    """One UDP conntrack entry as seen through ctnetlink (original and reply tuples)."""

    orig_src: IPAddress
    orig_dst: IPAddress
    orig_sport: int
    orig_dport: int
    reply_src: IPAddress
    reply_sport: int


def _family(ip: IPAddress) -> int:
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


def _tuple_fields(tup: Any, family: int) -> tuple[IPAddress, IPAddress, int, int] | None:
    """(src, dst, sport, dport) of a CTA_TUPLE_* attribute, or None if incomplete."""
    if tup is None:
        return None
    ip = tup.get_attr("CTA_TUPLE_IP")
    proto = tup.get_attr("CTA_TUPLE_PROTO")
    if ip is None or proto is None:
        return None
    prefix = "CTA_IP_V6" if family == socket.AF_INET6 else "CTA_IP_V4"
    src, dst = ip.get_attr(prefix + "_SRC"), ip.get_attr(prefix + "_DST")
    sport, dport = proto.get_attr("CTA_PROTO_SRC_PORT"), proto.get_attr("CTA_PROTO_DST_PORT")
    if src is None or dst is None or sport is None or dport is None:
        return None
    return ipaddress.ip_address(src), ipaddress.ip_address(dst), int(sport), int(dport)


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
        with self._socket(_family(vip), f"list UDP conntrack entries to {vip}:{port}") as ct:
            return list(self._matching(ct, vip, port, backend))

    def _matching(
        self, ct: Any, vip: IPAddress, port: int, backend: IPAddress | None
    ) -> Iterator[ConntrackUDPEntry]:
        family = _family(vip)
        v6 = vip.version == 6
        filters: list[list[Any]] = []
        kwargs: dict[str, Any] = {}
        if not (v6 and backend is not None):
            # IPv6: no daddr in the kernel filter (Linux 6.1 then matches nothing, see module doc).
            orig = NFCTAttrTuple(
                family=family, daddr=None if v6 else str(vip), proto=socket.IPPROTO_UDP, dport=port
            )
            orig.attrs()  # computes .flags
            filters.append(["CTA_FILTER_ORIG_FLAGS", orig.flags])
            kwargs["tuple_orig"] = orig
        if backend is not None:
            reply = NFCTAttrTuple(family=family, saddr=str(backend), proto=socket.IPPROTO_UDP)
            reply.attrs()
            filters.append(["CTA_FILTER_REPLY_FLAGS", reply.flags])
            kwargs["tuple_reply"] = reply
        msg = nfct_msg.create_from(cta_filter={"attrs": filters}, **kwargs)
        op = f"dump UDP conntrack entries to {vip}:{port}"
        try:
            replies = list(ct.request(msg, IPCTNL_MSG_CT_GET, msg_flags=NLM_F_REQUEST | NLM_F_DUMP))
        except (NetlinkError, OSError) as exc:
            raise map_netlink_error(exc, op) from exc
        for reply_msg in replies:
            o = _tuple_fields(reply_msg.get_attr("CTA_TUPLE_ORIG"), family)
            r = _tuple_fields(reply_msg.get_attr("CTA_TUPLE_REPLY"), family)
            if o is None or r is None:
                continue
            entry = ConntrackUDPEntry(o[0], o[1], o[2], o[3], r[0], r[2])
            # Defence in depth: the kernel filter narrows the dump, this check decides.
            if entry.orig_dst != vip or entry.orig_dport != port:
                continue
            if backend is not None and entry.reply_src != backend:
                continue
            yield entry

    def delete_udp_entries(self, vip: IPAddress, port: int, backend: IPAddress) -> int:
        """DESIGN §4 F5: delete the UDP entries to vip:port whose reply source is backend.

        Entries to the same VIP answered by any other backend are left alone. Returns the
        number of entries this call deleted.
        """
        if vip.version != backend.version:
            raise ValueError(f"address families differ: VIP {vip}, backend {backend}")
        op = f"delete UDP conntrack entries {vip}:{port} -> {backend}"
        family = _family(vip)
        with self._socket(family, op) as ct:
            keys = [
                NFCTAttrTuple(
                    family=family,
                    saddr=str(e.orig_src),
                    daddr=str(e.orig_dst),
                    proto=socket.IPPROTO_UDP,
                    sport=e.orig_sport,
                    dport=e.orig_dport,
                )
                for e in self._matching(ct, vip, port, backend)
            ]
            deleted = 0
            for start in range(0, len(keys), _DELETE_BATCH):
                outcomes = ct._run_with_cleanup(
                    _delete_many, ct.asyncore, keys[start : start + _DELETE_BATCH]
                )
                for outcome in outcomes:
                    if not isinstance(outcome, BaseException):
                        deleted += 1
                    elif isinstance(outcome, NetlinkError) and outcome.code == errno.ENOENT:
                        continue  # expired or deleted by someone else meanwhile
                    elif isinstance(outcome, NetlinkError | OSError):
                        raise map_netlink_error(outcome, op) from outcome
                    else:
                        raise outcome
        return deleted
