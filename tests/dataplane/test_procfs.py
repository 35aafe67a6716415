from __future__ import annotations

import io
import ipaddress
from pathlib import Path

import pytest

from proxymedic.dataplane.procfs import (
    MAX_LINE_BYTES,
    ProcConnectionTable,
    decode_connection_key,
    parse_ip_vs_conn,
    parse_ip_vs_conn_text,
    parse_nf_conntrack_stat,
    read_conntrack_stats,
)
from proxymedic.dataplane.types import (
    ConnectionCounts,
    ConnectionTable,
    DataplaneError,
    DataplaneUnavailableError,
    Endpoint,
    L4Protocol,
    ServiceKey,
)

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).parent / "golden"
ip = ipaddress.ip_address
UDP, TCP, SCTP = L4Protocol.UDP, L4Protocol.TCP, L4Protocol.SCTP
DNS_V4 = ServiceKey(UDP, ip("10.96.0.10"), 53)
DNS_V6 = ServiceKey(UDP, ip("fd00:10:96::a"), 53)


def counts_of(*items: tuple[L4Protocol, str, int, str, int, int]) -> set[ConnectionCounts]:
    return {
        ConnectionCounts(ServiceKey(proto, ip(vip), vport), Endpoint(ip(dest), dport), count)
        for proto, vip, vport, dest, dport, count in items
    }


GOLDEN_COUNTS = counts_of(
    (UDP, "10.96.0.10", 53, "10.244.1.2", 53, 2),
    (UDP, "10.96.0.10", 53, "10.244.2.3", 53, 1),
    (TCP, "10.96.0.10", 53, "10.244.2.3", 53, 2),
    (TCP, "10.96.0.1", 443, "10.0.1.100", 6443, 2),
    (UDP, "10.96.0.20", 5060, "10.244.3.5", 5060, 1),
    (SCTP, "10.96.0.32", 3868, "10.244.3.6", 3868, 1),
    (UDP, "fd00:10:96::a", 53, "fd00:10:244:1::2", 53, 2),
    (TCP, "fd00:10:96::a", 53, "fd00:10:244:2::3", 53, 1),
)


def test_golden_table_aggregates_ipv4_and_ipv6() -> None:
    scan = ProcConnectionTable(GOLDEN / "ip_vs_conn.txt").scan()
    assert set(scan.counts) == GOLDEN_COUNTS
    assert (scan.lines, scan.skipped, scan.connections) == (12, 0, 12)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 100, 1 << 20], ids=lambda size: f"chunk{size}")
def test_chunk_boundaries_do_not_change_the_result(chunk_size: int) -> None:
    data = (GOLDEN / "ip_vs_conn.txt").read_bytes()
    scan = parse_ip_vs_conn(io.BytesIO(data), chunk_size=chunk_size)
    assert set(scan.counts) == GOLDEN_COUNTS
    assert scan.skipped == 0


def test_filter_keeps_only_the_services_asked_for() -> None:
    table = ProcConnectionTable(GOLDEN / "ip_vs_conn.txt", services=[DNS_V4, DNS_V6])
    assert {(c.service, c.count) for c in table.connection_counts()} == {
        (DNS_V4, 2),
        (DNS_V4, 1),
        (DNS_V6, 2),
    }
    assert table.scan(services=[]).counts == ()
    assert table.scan(services=[]).skipped == 0


def test_selected_ipv4_services_count_as_a_full_read_does() -> None:
    """Asked for IPv4 services only, the parser finds their lines by their text and decodes no
    other line: the counts are those of a full read, whatever the chunking, whatever the hex case,
    and a selected address that appears in another column (a client or a backend at that address)
    does not make another service's line count."""
    lines = [
        "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData",
        "UDP 0A000005 9C40 0A60000A 0035 0AF40102 0035 UDP             287",
        "UDP 0a000006 9c40 0a60000a 0035 0af40102 0035 UDP             287",  # lower case
        "TCP 0A000005 9C40 0A60000A 0035 0AF40102 0035 ESTABLISHED     800",  # same VIP, TCP
        "UDP 0A60000A 0035 0A600014 13C4 0AF40305 13C4 UDP             100",  # VIP as the client
        "UDP 0A000007 9C42 0A600014 13C4 0A60000A 0035 UDP             100",  # VIP as the backend
        "UDP 0A000005 9C40 0A60000A 0035 0AF4",  # truncated: a bad line of the selected service
        "UDP 0A000005 9C40 0A600014 13C4 0AF40305",  # truncated, another service: not read
        "UDP 0A000005 9C40 0A60000A 0035 0AF40203 0035 UDP             287",
    ]
    data = "\n".join(lines).encode()
    everything = parse_ip_vs_conn(io.BytesIO(data))
    for chunk_size in (1, 7, 64, 1 << 20):
        scan = parse_ip_vs_conn(io.BytesIO(data), [DNS_V4], chunk_size=chunk_size)
        assert scan.counts == tuple(c for c in everything.counts if c.service == DNS_V4)
        assert scan.counts == (
            ConnectionCounts(DNS_V4, Endpoint(ip("10.244.1.2"), 53), 2),
            ConnectionCounts(DNS_V4, Endpoint(ip("10.244.2.3"), 53), 1),
        )
        assert (scan.lines, scan.skipped) == (8, 1)  # only the selected service's bad line
    assert (everything.lines, everything.skipped) == (8, 2)
    # An IPv6 service among those asked for: every line is read, as without a selection.
    both = parse_ip_vs_conn(io.BytesIO(data), [DNS_V4, DNS_V6])
    assert (both.counts, both.skipped) == (parse_ip_vs_conn(io.BytesIO(data), [DNS_V4]).counts, 2)


def test_malformed_lines_are_counted_and_skipped() -> None:
    text = "\n".join(
        [
            "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData",
            "UDP 0A000005 9C40 0A60000A 0035 0AF40102 0035 UDP             287",
            "UDP 0A000005 9C40 0A60000A 0035 0AF40102",  # truncated
            "UDP 0A000005 9C40 0A60ZZ0A 0035 0AF40102 0035 UDP             287",  # bad hex
            "UDP 0A000005 9C40 0A60000A 0x35 0AF40102 0035 UDP             287",  # 0x prefix
            "ICMP 0A000005 9C40 0A60000A 0035 0AF40102 0035 ICMP            1",  # not TCP/UDP/SCTP
            "UDP 0A000005 9C40 fd00::zz 0035 0AF40102 0035 UDP             287",  # bad IPv6
            "",  # empty lines are not connections, nor malformed
            "\x00\x01garbage",
            "UDP 0A000006 9C41 0a60000a 0035 0af40102 0035 UDP             287",  # lower case is fine
        ]
    )
    scan = parse_ip_vs_conn_text(text)
    assert scan.counts == (ConnectionCounts(DNS_V4, Endpoint(ip("10.244.1.2"), 53), 2),)
    assert (scan.lines, scan.skipped) == (8, 6)


def test_header_only_and_empty_input() -> None:
    assert parse_ip_vs_conn_text("").lines == 0
    header_only = parse_ip_vs_conn_text("Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires\n")
    assert (header_only.lines, header_only.skipped, header_only.counts) == (0, 0, ())


def test_overlong_line_is_skipped_without_buffering_it() -> None:
    line = b"UDP 0A000005 9C40 0A60000A 0035 0AF40102 0035 UDP             287\n"
    data = line + b"X" * (MAX_LINE_BYTES * 3) + b"\n" + line
    scan = parse_ip_vs_conn(io.BytesIO(data), chunk_size=512)
    assert scan.connections == 2
    assert scan.skipped == 1


def test_mixed_family_destination_decodes() -> None:
    decoded = decode_connection_key(b"TCP", b"0A60000A 0050 fd00:0000:0000:0000:0000:0000:0000:0001 1F90")
    assert decoded == (ServiceKey(TCP, ip("10.96.0.10"), 80), Endpoint(ip("fd00::1"), 8080))


def test_missing_table_means_ip_vs_not_loaded(tmp_path: Path) -> None:
    with pytest.raises(DataplaneUnavailableError, match="ip_vs module may not be loaded"):
        ProcConnectionTable(tmp_path / "ip_vs_conn").scan()


def test_proc_connection_table_is_a_connection_table() -> None:
    table: ConnectionTable = ProcConnectionTable(GOLDEN / "ip_vs_conn.txt")
    assert len(table.connection_counts()) == len(GOLDEN_COUNTS)


# --- conntrack ----------------------------------------------------------------------


def test_golden_nf_conntrack_stat_sums_per_cpu_columns() -> None:
    counters = parse_nf_conntrack_stat((GOLDEN / "nf_conntrack_stat.txt").read_text())
    assert (counters.drops, counters.insert_failed, counters.early_drops) == (0x5 + 0xA, 3 + 1, 1)
    assert (counters.cpus, counters.skipped) == (2, 0)


def test_nf_conntrack_stat_of_an_old_kernel_lacks_columns() -> None:
    text = "entries  searched found new invalid ignore delete delete_list insert insert_failed drop\n"
    text += "00000010  00000001 00000002 00000003 00000000 00000000 00000000 00000000 00000000 "
    text += "00000002 00000001\n"
    text += "broken row\n"
    counters = parse_nf_conntrack_stat(text)
    assert (counters.drops, counters.insert_failed, counters.early_drops) == (1, 2, None)
    assert counters.skipped == 1


def test_read_conntrack_stats(tmp_path: Path) -> None:
    (tmp_path / "count").write_text("466\n")
    (tmp_path / "max").write_text("262144\n")
    stats = read_conntrack_stats(GOLDEN / "nf_conntrack_stat.txt", tmp_path / "count", tmp_path / "max")
    assert (stats.count, stats.max, stats.drops, stats.insert_failed, stats.early_drops) == (
        466,
        262144,
        15,
        4,
        1,
    )
    without_table = read_conntrack_stats(tmp_path / "absent", tmp_path / "count", tmp_path / "max")
    assert without_table.drops is None


def test_read_conntrack_stats_errors(tmp_path: Path) -> None:
    (tmp_path / "max").write_text("262144\n")
    with pytest.raises(DataplaneUnavailableError, match="nf_conntrack module may not be loaded"):
        read_conntrack_stats(tmp_path / "stat", tmp_path / "count", tmp_path / "max")
    (tmp_path / "count").write_text("lots\n")
    with pytest.raises(DataplaneError, match="not an integer"):
        read_conntrack_stats(tmp_path / "stat", tmp_path / "count", tmp_path / "max")
