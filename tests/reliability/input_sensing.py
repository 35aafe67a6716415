"""Hostile node input for the agent's sensing: kube-proxy pages, /proc/net/ip_vs_conn, sysctl files,
netlink errors. Each table maps a case to what the report must say; the suite runs them through the
real adapters and ``sense()``.
"""

from __future__ import annotations

import errno
import json

NOW = 1_800_000_000.0
"""The probe's clock in these tables (2027-01-15)."""
SYNC = "kubeproxy_sync_proxy_rules_last_timestamp_seconds"
QUEUED = "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds"
PENDING = "kubeproxy_sync_proxy_rules_endpoint_changes_pending"


def page(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


FRESH = page(f"# TYPE {SYNC} gauge", f"{SYNC} {NOW - 5}")
OLD_SYNC = f"{SYNC} {NOW - 600}"

# /metrics: (HTTP status, body, freshness reported, words of the reason)
METRICS_PAGES: dict[str, tuple[int, bytes, str, str]] = {
    "valid": (200, FRESH, "Fresh", "last sync 5 s ago"),
    "empty": (200, b"", "Unknown", "is missing"),
    "binary-junk": (200, bytes(range(256)) * 8, "Unknown", "metrics unavailable"),
    "not-utf8": (200, b"\xff\xfe" + FRESH, "Unknown", "metrics unavailable"),
    "html-error-page": (200, b"<html><body>502 Bad Gateway</body></html>", "Unknown", "not a Prometheus"),
    "json": (200, b'{"lastSync": 5}', "Unknown", "metrics unavailable"),
    "truncated-in-name": (200, SYNC[:20].encode(), "Unknown", "metrics unavailable"),
    "truncated-before-value": (200, f"{SYNC} ".encode(), "Unknown", "metrics unavailable"),
    "truncated-in-value": (200, f"{SYNC} 1800000".encode(), "Fresh", "idle"),
    "nan-sync": (200, page(f"{SYNC} NaN"), "Unknown", "is missing"),
    "inf-sync": (200, page(f"{SYNC} +Inf"), "Unknown", "is missing"),
    "negative-sync": (200, page(f"{SYNC} -5"), "Unknown", "is missing"),
    "far-future-sync": (200, page(f"{SYNC} 1e18"), "Unknown", "is missing"),
    "far-past-sync": (200, page(f"{SYNC} -1e18"), "Unknown", "is missing"),
    "huge-exponent-sync": (200, page(f"{SYNC} 1e308"), "Unknown", "is missing"),
    "nan-queued": (200, page(OLD_SYNC, f"{QUEUED} NaN"), "Fresh", "idle"),
    "future-queued": (200, page(OLD_SYNC, f"{QUEUED} 1e18"), "Fresh", "idle"),
    "inf-pending": (200, page(OLD_SYNC, f"{PENDING} +Inf"), "Fresh", "idle"),
    "negative-pending": (200, page(OLD_SYNC, f"{PENDING} -5"), "Fresh", "idle"),
    "duplicated-sample": (200, page(OLD_SYNC, f"{SYNC} {NOW - 5}"), "Fresh", "last sync 5 s ago"),
    "duplicated-type-line": (
        200,
        page(f"# TYPE {SYNC} gauge", f"# TYPE {SYNC} gauge", f"{SYNC} {NOW - 5}"),
        "Fresh",
        "last sync 5 s ago",
    ),
    "broken-label": (200, page(SYNC + '{ip_family="IPv4} ' + str(NOW - 5)), "Unknown", "not a Prometheus"),
    "impossible-family": (
        200,
        page(f'{SYNC}{{ip_family="IPv4"}} {NOW - 5}', f'{SYNC}{{ip_family="IPv6"}} 1e18'),
        "Fresh",
        "last sync 5 s ago",
    ),
    "over-4-mb": (200, b"# " + b"x" * (5 << 20) + b"\n" + FRESH, "Unknown", "larger than"),
    "3-mb-of-comments": (200, (b"# padding " + b"x" * 990 + b"\n") * 3000 + FRESH, "Fresh", "last sync 5 s"),
    "http-500": (500, FRESH, "Unknown", "HTTP 500"),
    "http-404": (404, b"404 page not found", "Unknown", "HTTP 404"),
    "redirect": (302, b"", "Unknown", "HTTP 302"),
}

HEALTHY = json.dumps(
    {"lastUpdated": "2027-01-15 08:00:00 +0000 UTC", "currentTime": "2027-01-15 08:00:00 +0000 UTC"}
)
# /healthz: (HTTP status, body, healthz reported); freshness must never be Stale from these alone.
HEALTHZ_BODIES: dict[str, tuple[int, bytes, str]] = {
    "valid": (200, HEALTHY.encode(), "Healthy"),
    "plain-ok": (200, b"ok", "Unknown"),
    "json-array": (200, b"[]", "Unknown"),
    "no-last-updated": (503, b'{"currentTime": "now"}', "Unknown"),
    "garbage-times": (503, b'{"lastUpdated": "yesterday", "currentTime": 5}', "Unhealthy"),
    "go-zero-time": (503, b'{"lastUpdated": "0001-01-01 00:00:00 +0000 UTC"}', "Unhealthy"),
    "eligible-not-a-bool": (503, b'{"lastUpdated": "x", "nodeEligible": "no"}', "Unhealthy"),
    "teapot": (418, HEALTHY.encode(), "Unknown"),
    "over-4-mb": (200, b" " * (5 << 20) + HEALTHY.encode(), "Unknown"),
}

# /proc/net/ip_vs_conn of a node whose VIP 10.96.0.10:53/UDP has one real server (10.244.2.7):
# (content, orphaned connections to the dead 10.244.1.5:53 reported)
HEADER = b"Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n"
STALE = b"UDP 0A000105 D431 0A60000A 0035 0AF40105 0035 UDP             287\n"
KEY_END = len(b"UDP 0A000105 D431 0A60000A 0035 0AF40105 0035")
"""Where the key columns of STALE end; the parser needs the space after them."""
IPV6 = (
    b"UDP fd00:0000:0000:0000:0000:0000:0000:0001 D431 fd00:0000:0000:0000:0000:0000:0000:0010 0035 "
    b"fd00:0244:0000:0000:0000:0000:0000:0005 0035 UDP  5\n"
)
IP_VS_CONN: dict[str, tuple[bytes, int]] = {
    "valid": (HEADER + STALE * 3, 3),
    "empty": (b"", 0),
    "header-only": (HEADER, 0),
    "truncated-last-line": (HEADER + STALE * 3 + STALE[:12], 3),
    "truncated-inside-the-key": (b"".join(STALE[:n] + b"\n" for n in range(1, KEY_END + 1)), 0),
    # Cut in the state or expiry column: the key (VIP, destination) is whole, so the entry counts.
    "truncated-after-the-key": (
        b"".join(STALE[:n] + b"\n" for n in range(KEY_END + 1, len(STALE) - 1)),
        len(STALE) - 2 - KEY_END,
    ),
    "bad-hex": (HEADER + STALE.replace(b"0AF40105", b"0AF4010G") + STALE, 1),
    "lowercase-hex": (HEADER + STALE.lower().replace(b"udp", b"UDP"), 1),
    "short-address": (STALE.replace(b"0AF40105", b"0AF401"), 0),
    "five-digit-port": (STALE.replace(b"0035 UDP", b"00035 UDP"), 0),
    "unknown-protocol": (STALE.replace(b"UDP 0A", b"XYZ 0A"), 0),
    "nul-bytes": (STALE.replace(b" D431", b"\x00D431") + STALE, 1),
    "crlf-endings": (STALE.replace(b"\n", b"\r\n") * 2, 2),
    "tabs-for-spaces": (STALE.replace(b" ", b"\t"), 0),
    "binary-junk": (bytes(range(256)) * 64, 0),
    "overlong-line": (b"UDP " + b"A" * 100_000 + b"\n" + STALE, 1),
    "ipv6-lines": (HEADER + IPV6 * 2 + STALE, 1),
    "no-final-newline": (STALE * 2 + STALE[:-1], 3),
    "200k-junk-lines": (b"garbage line that is not a connection\n" * 200_000 + STALE, 1),
}

# A sysctl file's content (net/ipv4/vs/expire_nodest_conn): the value reported, or None (unknown).
SYSCTL_FILES: dict[str, tuple[bytes, int | None]] = {
    "valid": (b"1\n", 1),
    "whitespace": (b"  1  \n\n", 1),
    "negative": (b"-1\n", -1),
    "empty": (b"", None),
    "word": (b"abc\n", None),
    "two-numbers": (b"1 2\n", None),
    "binary": (b"\x00\xff\x01", None),
    "underscore": (b"1_000\n", None),
    "other-script-digits": ("\u0661\n".encode(), None),
    "beyond-64-bits": (b"99999999999999999999999\n", None),
    "4-kb-of-digits": (b"1" * 1_000_000, None),
    "float": (b"1.0\n", None),
}

# OSError errno an open() of a sysctl file may fail with; each leaves the value unknown.
SYSCTL_OPEN_ERRNOS = (
    errno.ENOENT,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.EIO,
    errno.EISDIR,
    errno.ENOMEM,
)

# Netlink answers (NetlinkError.code) at the IPVS and ctnetlink adapter boundary.
NETLINK_ERRNOS = (
    errno.EPERM,
    errno.EACCES,
    errno.ENOENT,
    errno.ESRCH,
    errno.ENOTSUP,
    errno.EPROTONOSUPPORT,
    errno.EAFNOSUPPORT,
    errno.EBUSY,
    errno.EAGAIN,
    errno.ENOBUFS,
    errno.ENOMEM,
    errno.EINVAL,
    errno.EIO,
    errno.EINTR,
    errno.ETIMEDOUT,
    errno.EMSGSIZE,
    errno.EFAULT,
    errno.ECONNREFUSED,
)
# Where the IPVS adapter meets the error while the agent senses.
IPVS_SENSING_CALLS = ("open socket", "get config", "dump services", "dump real servers")
# Where the ctnetlink adapter meets the error while the agent senses (with and without /proc fallback).
CONNTRACK_SENSING_CALLS = ("open socket", "count", "stat")
# Where the IPVS adapter meets the error while the agent removes a stale real server.
IPVS_REPAIR_CALLS = ("get service", "delete real server")
