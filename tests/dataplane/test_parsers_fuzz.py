"""Random and malformed input never crashes a parser; valid random tables parse exactly."""

from __future__ import annotations

import contextlib
import io
import ipaddress
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxymedic.dataplane.kubeproxy import (
    KubeProxyObservation,
    MetricsPageError,
    ProxyMode,
    judge,
    parse_go_time,
    parse_healthz,
    parse_metrics,
)
from proxymedic.dataplane.procfs import parse_ip_vs_conn, parse_nf_conntrack_stat
from proxymedic.dataplane.types import Endpoint, IPAddress, L4Protocol, ServiceKey

pytestmark = pytest.mark.unit

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GOLDEN = Path(__file__).parent / "golden"
METRICS_PAGE = (GOLDEN / "metrics_iptables.txt").read_text()

# Text close to the real formats finds more corner cases than uniform noise.
conn_alphabet = st.sampled_from([*list("0123456789ABCDEFabcdef: \nUDPTCSRO"), "\t", "\x00", "é", "\r"])
near_conn_text = st.text(conn_alphabet, max_size=400)
chunk_sizes = st.integers(min_value=1, max_value=300)


@FUZZ
@given(data=st.binary(max_size=600) | near_conn_text.map(str.encode), chunk_size=chunk_sizes)
def test_ip_vs_conn_parser_never_raises(data: bytes, chunk_size: int) -> None:
    scan = parse_ip_vs_conn(io.BytesIO(data), chunk_size=chunk_size)
    assert 0 <= scan.skipped <= scan.lines
    assert scan.connections + scan.skipped == scan.lines


ipv4 = st.integers(min_value=0, max_value=2**32 - 1).map(ipaddress.IPv4Address)
ipv6 = st.integers(min_value=0, max_value=2**128 - 1).map(ipaddress.IPv6Address)
addresses = ipv4 | ipv6
ports = st.integers(min_value=0, max_value=65535)
protocols = st.sampled_from(list(L4Protocol))
states = st.sampled_from(["UDP", "ESTABLISHED", "TIME_WAIT", "SYN_RECV", "CLOSE_WAIT", "NONE"])


def proc_address(address: IPAddress) -> str:
    return f"{int(address):08X}" if address.version == 4 else address.exploded


connection_lines = st.tuples(protocols, addresses, ports, addresses, ports, addresses, ports, states, ports)


@FUZZ
@given(rows=st.lists(connection_lines, max_size=40), chunk_size=chunk_sizes, header=st.booleans())
def test_valid_random_tables_parse_exactly(
    rows: list[tuple[L4Protocol, IPAddress, int, IPAddress, int, IPAddress, int, str, int]],
    chunk_size: int,
    header: bool,
) -> None:
    lines = (
        ["Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData"] if header else []
    )
    expected: Counter[tuple[ServiceKey, Endpoint]] = Counter()
    for proto, client, cport, vip, vport, dest, dport, state, expires in rows:
        lines.append(
            f"{proto.value:<3} {proc_address(client)} {cport:04X} {proc_address(vip)} {vport:04X} "
            f"{proc_address(dest)} {dport:04X} {state:<11} {expires:7d}"
        )
        expected[ServiceKey(proto, vip, vport), Endpoint(dest, dport)] += 1
    scan = parse_ip_vs_conn(io.BytesIO("\n".join(lines).encode() + b"\n"), chunk_size=chunk_size)
    assert scan.skipped == 0
    assert {(c.service, c.destination): c.count for c in scan.counts} == dict(expected)


@FUZZ
@given(
    words=st.lists(
        st.sampled_from(["drop", "entries", "early_drop", "insert_failed", "0000001f", "zz", " ", "\n", "é"]),
        max_size=60,
    )
)
def test_nf_conntrack_stat_parser_never_raises(words: list[str]) -> None:
    counters = parse_nf_conntrack_stat(" ".join(words))
    assert counters.skipped >= 0


@FUZZ
@given(
    cut=st.integers(min_value=0, max_value=len(METRICS_PAGE)),
    junk=st.text(max_size=40),
    drop=st.integers(min_value=0, max_value=200),
)
def test_damaged_metrics_pages_raise_only_metrics_page_error(cut: int, junk: str, drop: int) -> None:
    page = METRICS_PAGE[:cut] + junk + METRICS_PAGE[cut + drop :]
    try:
        metrics = parse_metrics(page)
    except MetricsPageError:
        return
    judge(KubeProxyObservation(observed_at=1723900100.0, metrics=metrics))


@FUZZ
@given(text=st.text(max_size=300))
def test_random_metrics_text_raises_only_metrics_page_error(text: str) -> None:
    with contextlib.suppress(MetricsPageError):
        parse_metrics(text)


@FUZZ
@given(status=st.sampled_from([200, 503, 404]), body=st.text(max_size=200) | st.just('{"lastUpdated": 5}'))
def test_healthz_parser_raises_only_value_error(status: int, body: str) -> None:
    with contextlib.suppress(ValueError):
        parse_healthz(status, body)


@FUZZ
@given(
    text=st.text(max_size=80) | st.from_regex(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,12})? [+-]\d{4}")
)
def test_go_time_and_proxy_mode_never_raise(text: str) -> None:
    parse_go_time(text)
    assert ProxyMode.parse(text) is None or isinstance(ProxyMode.parse(text), ProxyMode)
