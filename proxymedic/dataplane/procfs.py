"""Readers of the kernel's /proc tables: the IPVS connection table and conntrack statistics.

``/proc/net/ip_vs_conn`` can hold millions of lines on a busy node, so the parser streams
it in chunks of bytes, aggregates on the raw key columns first and decodes hex to
addresses once per distinct (protocol, virtual service, destination), not once per line.
Bad content never raises: such lines are counted and skipped.

Line format (net/netfilter/ipvs/ip_vs_conn.c, ``ip_vs_conn_seq_show``)::

    Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
    UDP 0A000105 D431 0A60000A 0035 0AF40103 0035 UDP             287

IPv4 addresses are 8 upper-case hex digits (host order of the network value), IPv6
addresses are printed by ``%pI6`` as eight colon-separated groups of four hex digits,
ports are 4 hex digits. The destination's family may differ from the service's.
"""

from __future__ import annotations

import errno
import ipaddress
import re
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from proxymedic.dataplane.types import (
    ConnectionCounts,
    ConntrackStats,
    DataplaneError,
    DataplanePermissionError,
    DataplaneUnavailableError,
    Endpoint,
    IPAddress,
    L4Protocol,
    ServiceKey,
)

IP_VS_CONN_PATH = Path("/proc/net/ip_vs_conn")
NF_CONNTRACK_STAT_PATH = Path("/proc/net/stat/nf_conntrack")
NF_CONNTRACK_COUNT_PATH = Path("/proc/sys/net/netfilter/nf_conntrack_count")
NF_CONNTRACK_MAX_PATH = Path("/proc/sys/net/netfilter/nf_conntrack_max")

DEFAULT_CHUNK_SIZE = 1 << 20
# The kernel's longest line (IPv6 everywhere plus persistence-engine data) is well below
# this; anything longer is garbage and is skipped without buffering it.
MAX_LINE_BYTES = 4096

_HEADER_PREFIX = b"Pro "
# Protocol, then the client address and port (ignored), then ToIP TPrt DestIP DPrt as one
# group. The seven leading columns are separated by exactly one space and the state column
# follows after a space. Possessive quantifiers never backtrack (about 30% faster). Field
# contents are validated once per distinct key, not per line.
_CONN_LINE = re.compile(rb"^(\S++) \S++ \S++ (\S++ \S++ \S++ \S++) ", re.MULTILINE)
_IPV4_HEX = re.compile(rb"[0-9A-Fa-f]{8}")
_PORT_HEX = re.compile(rb"[0-9A-Fa-f]{4}")
_IPV6_TEXT = re.compile(rb"[0-9A-Fa-f:]{2,39}")
_PROTOCOLS = {b"TCP": L4Protocol.TCP, b"UDP": L4Protocol.UDP, b"SCTP": L4Protocol.SCTP}

_RawKey = tuple[bytes, bytes]


@dataclass(frozen=True)
class ConnectionTableScan:
    """One pass over the IPVS connection table.

    ``lines`` counts connection lines (the header and empty lines excluded); ``skipped`` counts the lines
    that did not parse, including connections of protocols other than TCP, UDP and SCTP.
    """

    counts: tuple[ConnectionCounts, ...]
    lines: int
    skipped: int

    @property
    def connections(self) -> int:
        return sum(item.count for item in self.counts)


def _decode_address(raw: bytes) -> IPAddress | None:
    if _IPV4_HEX.fullmatch(raw):
        return ipaddress.IPv4Address(int(raw, 16))
    if b":" in raw and _IPV6_TEXT.fullmatch(raw):
        try:
            return ipaddress.IPv6Address(raw.decode("ascii"))
        except ValueError:
            return None
    return None


def _decode_port(raw: bytes) -> int | None:
    return int(raw, 16) if _PORT_HEX.fullmatch(raw) else None


def decode_connection_key(protocol: bytes, columns: bytes) -> tuple[ServiceKey, Endpoint] | None:
    """Decode ``ToIP TPrt DestIP DPrt`` of one protocol; None if any field is malformed."""
    proto = _PROTOCOLS.get(protocol)
    parts = columns.split(b" ")
    if proto is None or len(parts) != 4:
        return None
    vip, vport = _decode_address(parts[0]), _decode_port(parts[1])
    dest, dport = _decode_address(parts[2]), _decode_port(parts[3])
    if vip is None or vport is None or dest is None or dport is None:
        return None
    return ServiceKey(proto, vip, vport), Endpoint(dest, dport)


def _complete_lines(stream: BinaryIO, chunk_size: int) -> Iterator[tuple[bytes | None, int]]:
    """Yield blocks of whole lines (final newline stripped) and how many over-long lines were dropped.

    A block of None carries no line (the chunk ended inside a line); b"" is one empty line.
    """
    carry = b""
    discarding = False  # inside a line longer than MAX_LINE_BYTES, up to its newline
    while chunk := stream.read(chunk_size):
        if discarding:
            newline = chunk.find(b"\n")
            if newline < 0:
                continue
            chunk, discarding = chunk[newline + 1 :], False
        data = carry + chunk if carry else chunk
        last_newline = data.rfind(b"\n")
        block: bytes | None = None
        if last_newline < 0:
            carry = data
        else:
            block, carry = data[:last_newline], data[last_newline + 1 :]
        dropped = 0
        if len(carry) > MAX_LINE_BYTES:
            carry, discarding, dropped = b"", True, 1
        if block is not None or dropped:
            yield block, dropped
    if carry:
        yield carry, 0


def _count_lines(block: bytes) -> int:
    """Non-empty lines of a block; the exact (slower) count only when empty lines exist."""
    if not block:
        return 0
    count = block.count(b"\n") + 1
    if b"\n\n" in block or block.startswith(b"\n") or block.endswith(b"\n"):
        count -= block.split(b"\n").count(b"")
    return count


def _needles(services: frozenset[ServiceKey]) -> tuple[bytes, ...] | None:
    """The ``ToIP TPrt`` text of these services, as the kernel prints it (``%08X %04X``) and in
    lower case; None when a service is IPv6 (``%pI6`` text may be written in more than one way,
    and the decoder accepts them all: every line is read then)."""
    if not services or any(key.vip.version != 4 for key in services):
        return None
    upper = {b"%08X %04X" % (int(key.vip), key.port) for key in services}
    return tuple(sorted(upper | {needle.lower() for needle in upper}))


def _selected_lines(block: bytes, needles: tuple[bytes, ...]) -> tuple[list[_RawKey], int]:
    """The raw keys of the lines that hold one of ``needles``: found by substring search, which
    passes over the other services' lines in C at memory speed, then parsed like any line. A
    needle found in another column only makes a line a candidate: its decoded key is filtered.
    Also returns how many candidate lines there were (a candidate that does not parse is skipped)."""
    starts: set[int] = set()
    for needle in needles:
        at = block.find(needle)
        while at >= 0:
            starts.add(block.rfind(b"\n", 0, at) + 1)
            end = block.find(b"\n", at)
            if end < 0:
                break
            at = block.find(needle, end)
    keys = []
    for start in starts:
        match = _CONN_LINE.match(block, start)
        if match is not None:
            keys.append((match[1], match[2]))
    return keys, len(starts)


def _aggregate(
    stream: BinaryIO, chunk_size: int, needles: tuple[bytes, ...] | None = None
) -> tuple[Counter[_RawKey], int, int]:
    """Raw keys with their counts, the connection lines, and the lines examined (every line, or
    with ``needles`` the candidate lines only)."""
    raw_counts: Counter[_RawKey] = Counter()
    lines = examined = 0
    at_start = True
    for block, dropped in _complete_lines(stream, chunk_size):
        lines += dropped
        if needles is None:
            examined += dropped  # an over-long line is skipped; with needles, whose it was is unknown
        if block is None:
            continue
        if at_start:
            at_start = False
            if block.startswith(_HEADER_PREFIX):
                newline = block.find(b"\n")
                if newline < 0:
                    continue
                block = block[newline + 1 :]
        count = _count_lines(block)
        lines += count
        if needles is None:
            raw_counts.update(_CONN_LINE.findall(block))
            examined += count
        else:
            keys, candidates = _selected_lines(block, needles)
            raw_counts.update(keys)
            examined += candidates
    return raw_counts, lines, examined


def _sort_key(item: tuple[tuple[ServiceKey, Endpoint], int]) -> tuple[object, ...]:
    (service, destination), _ = item
    return (service.sort_key(), destination.sort_key())


def parse_ip_vs_conn(
    stream: BinaryIO,
    services: Collection[ServiceKey] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> ConnectionTableScan:
    """Aggregate an ip_vs_conn stream per virtual service and destination.

    With ``services``, only those virtual services are reported. When they are all IPv4 the
    other services' lines are not even decoded, so ``skipped`` then counts only the bad lines
    among the selected services' (the others count as lines, not as skipped ones).
    """
    wanted = None if services is None else frozenset(services)
    selective = None if wanted is None else _needles(wanted)
    raw_counts, lines, examined = _aggregate(stream, chunk_size, selective)
    merged: dict[tuple[ServiceKey, Endpoint], int] = {}
    parsed = 0
    for (protocol, columns), count in raw_counts.items():
        decoded = decode_connection_key(protocol, columns)
        if decoded is None:
            continue
        parsed += count
        if wanted is not None and decoded[0] not in wanted:
            continue
        # Differently spelled raw keys (hex case) can decode to the same key.
        merged[decoded] = merged.get(decoded, 0) + count
    counts = tuple(
        ConnectionCounts(service=service, destination=destination, count=count)
        for (service, destination), count in sorted(merged.items(), key=_sort_key)
    )
    return ConnectionTableScan(counts=counts, lines=lines, skipped=examined - parsed)


def parse_ip_vs_conn_text(text: str, services: Collection[ServiceKey] | None = None) -> ConnectionTableScan:
    """Convenience for small inputs held in memory (tests, CLI output)."""
    import io

    return parse_ip_vs_conn(io.BytesIO(text.encode("utf-8", "surrogateescape")), services)


def _open_error(path: Path, what: str, exc: OSError) -> DataplaneError:
    if isinstance(exc, FileNotFoundError):
        return DataplaneUnavailableError(f"{path} does not exist: {what}")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return DataplanePermissionError(f"cannot read {path}: {exc.strerror}")
    return DataplaneError(f"cannot read {path}: {exc}")


class ProcConnectionTable:
    """The ``ConnectionTable`` protocol over /proc/net/ip_vs_conn."""

    def __init__(
        self,
        path: Path = IP_VS_CONN_PATH,
        services: Collection[ServiceKey] | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.path = path
        self.services = None if services is None else frozenset(services)
        self.chunk_size = chunk_size

    def scan(self, services: Collection[ServiceKey] | None = None) -> ConnectionTableScan:
        """Read the table once; ``services`` overrides the filter given at construction."""
        selected = self.services if services is None else services
        try:
            with self.path.open("rb", buffering=0) as stream:
                return parse_ip_vs_conn(stream, selected, self.chunk_size)
        except OSError as exc:
            raise _open_error(self.path, "the ip_vs module may not be loaded", exc) from exc

    def connection_counts(self, services: Collection[ServiceKey] | None = None) -> list[ConnectionCounts]:
        return list(self.scan(services).counts)


# --- conntrack statistics -------------------------------------------------------------


@dataclass(frozen=True)
class ConntrackCounters:
    """Per-CPU counters of /proc/net/stat/nf_conntrack summed over CPUs.

    A counter is None when this kernel's table has no such column. ``skipped`` counts rows
    that did not parse.
    """

    drops: int | None
    insert_failed: int | None
    early_drops: int | None
    cpus: int
    skipped: int


def parse_nf_conntrack_stat(text: str) -> ConntrackCounters:
    """Parse the per-CPU hex table; the columns are found by the header's names.

    The ``entries`` column repeats the global count on every row, so it is not summed.
    """
    lines = [line.split() for line in text.splitlines() if line.strip()]
    wanted = {"drop": 0, "insert_failed": 0, "early_drop": 0}
    if not lines:
        return ConntrackCounters(None, None, None, cpus=0, skipped=0)
    header = lines[0]
    index = {name: header.index(name) for name in wanted if name in header}
    cpus = skipped = 0
    for row in lines[1:]:
        if len(row) != len(header):
            skipped += 1
            continue
        try:
            values = {name: int(row[column], 16) for name, column in index.items()}
        except ValueError:
            skipped += 1
            continue
        cpus += 1
        for name, value in values.items():
            wanted[name] += value

    def total(name: str) -> int | None:
        return wanted[name] if name in index else None

    return ConntrackCounters(
        drops=total("drop"),
        insert_failed=total("insert_failed"),
        early_drops=total("early_drop"),
        cpus=cpus,
        skipped=skipped,
    )


def _read_int(path: Path) -> int:
    try:
        text = path.read_text()
    except OSError as exc:
        raise _open_error(path, "the nf_conntrack module may not be loaded", exc) from exc
    try:
        return int(text.strip())
    except ValueError:
        raise DataplaneError(f"{path} holds {text.strip()[:40]!r}, not an integer") from None


def read_conntrack_stats(
    stat_path: Path = NF_CONNTRACK_STAT_PATH,
    count_path: Path = NF_CONNTRACK_COUNT_PATH,
    max_path: Path = NF_CONNTRACK_MAX_PATH,
) -> ConntrackStats:
    """count/max from the sysctls (required) and drop counters from the stat table (optional).

    The per-CPU table is absent in some network namespaces; its counters are then None.
    """
    count, maximum = _read_int(count_path), _read_int(max_path)
    try:
        counters = parse_nf_conntrack_stat(stat_path.read_text(errors="replace"))
    except OSError:
        return ConntrackStats(count=count, max=maximum)
    return ConntrackStats(
        count=count,
        max=maximum,
        drops=counters.drops,
        insert_failed=counters.insert_failed,
        early_drops=counters.early_drops,
    )
