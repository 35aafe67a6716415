from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from proxymedic.dataplane.kubeproxy import (
    FamilySync,
    Freshness,
    Healthz,
    KubeProxyObservation,
    MetricsPageError,
    ProxyMode,
    SyncMetrics,
    judge,
    parse_go_time,
    parse_healthz,
    parse_metrics,
)

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).parent / "golden"


def golden(name: str) -> str:
    return (GOLDEN / name).read_text()


def test_iptables_page() -> None:
    metrics = parse_metrics(golden("metrics_iptables.txt"))
    assert metrics.families == (FamilySync("IPv4", last_sync=1723900051.3412, last_queued=1723900050.2345),)
    assert (metrics.endpoint_changes_pending, metrics.service_changes_pending) == (0, 0)
    assert metrics.restore_failures == 2
    assert (metrics.sync_count, metrics.sync_seconds_sum) == (106, 1.7215)
    assert (metrics.endpoint_changes_total, metrics.service_changes_total) == (245, 88)
    assert metrics.process_start == 1.72389e09


def test_ipvs_page_of_an_older_release_without_labels() -> None:
    metrics = parse_metrics(golden("metrics_ipvs.txt"))
    assert metrics.families == (FamilySync("", last_sync=1723900100.0, last_queued=1723900400.0),)
    assert metrics.pending_changes == 4
    assert metrics.restore_failures == 0


def test_nftables_dual_stack_page() -> None:
    metrics = parse_metrics(golden("metrics_nftables.txt"))
    assert [family.family for family in metrics.families] == ["IPv4", "IPv6"]
    assert metrics.nftables_sync_failures == 1
    assert metrics.restore_failures is None
    assert metrics.sync_count == 46  # not mixed up with the full/partial histograms
    assert metrics.endpoint_changes_total is None  # not on the page: unknown, never 0


def test_change_counters_that_no_counter_can_hold_are_unknown() -> None:
    page = (
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds 1723900051\n"
        "kubeproxy_sync_proxy_rules_endpoint_changes_total -3\n"
        "process_start_time_seconds -1\n"
    )
    metrics = parse_metrics(page)
    assert (metrics.endpoint_changes_total, metrics.process_start) == (None, None)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "<html>502 Bad Gateway</html>",
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds NaN\n",
        "go_goroutines 4\n",
    ],
    ids=["empty", "html", "nan", "no-sync-metric"],
)
def test_pages_without_usable_sync_timestamp(text: str) -> None:
    with pytest.raises(MetricsPageError):
        parse_metrics(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-08-17 13:08:34.123456789 +0000 UTC m=+3600.004211803", 1723900114.123456789),
        ("2024-08-17 15:08:34.5 +0200 CEST", 1723900114.5),
        ("2024-08-17T13:08:34Z", 1723900114.0),
        ("0001-01-01 00:00:00 +0000 UTC", None),
        ("yesterday", None),
        ("2024-13-45 99:99:99 +0000 UTC", None),
    ],
    ids=["go-utc-monotonic", "go-offset", "rfc3339", "zero-time", "garbage", "impossible-date"],
)
def test_parse_go_time(text: str, expected: float | None) -> None:
    assert parse_go_time(text) == pytest.approx(expected)


def test_healthz_bodies() -> None:
    healthy = parse_healthz(200, golden("healthz_healthy.json"))
    assert healthy.healthy
    assert healthy.node_eligible is True
    stale = parse_healthz(503, golden("healthz_stale.json"))
    assert stale.current_time is not None
    assert stale.last_updated is not None
    assert stale.current_time - stale.last_updated == pytest.approx(383.623, abs=1e-3)
    assert parse_healthz(503, golden("healthz_not_eligible.json")).node_eligible is False
    assert parse_healthz(200, golden("healthz_legacy.json")).node_eligible is None
    for status, body in [(500, "{}"), (200, "not json"), (200, "[1]"), (503, '{"currentTime": "x"}')]:
        with pytest.raises(ValueError, match="healthz"):
            parse_healthz(status, body)


@pytest.mark.parametrize(
    ("text", "mode"),
    [("ipvs", ProxyMode.IPVS), ("iptables\n", ProxyMode.IPTABLES), ("nftables", ProxyMode.NFTABLES),
     ("kernelspace", ProxyMode.KERNELSPACE), ("userspace", ProxyMode.OTHER), ("<html>", None), ("", None)],
)  # fmt: skip
def test_proxy_mode(text: str, mode: ProxyMode | None) -> None:
    assert ProxyMode.parse(text) is mode


# --- verdict --------------------------------------------------------------------------

NOW = 1_000_000.0
STALE_AFTER = 60.0


def sync(last_sync: float | None, last_queued: float | None = None, family: str = "") -> FamilySync:
    """Ages in seconds before NOW."""
    return FamilySync(
        family,
        None if last_sync is None else NOW - last_sync,
        None if last_queued is None else NOW - last_queued,
    )


def healthz(status: int, updated_ago: float, eligible: bool | None = True) -> Healthz:
    return Healthz(status, last_updated=NOW - updated_ago, current_time=NOW, node_eligible=eligible)


@dataclass(frozen=True)
class Case:
    id: str
    families: tuple[FamilySync, ...] | None
    expected: Freshness
    reason: str
    pending: float = 0.0
    health: Healthz | None = None


CASES = [
    Case("recent-sync", (sync(5, 6),), Freshness.FRESH, "last sync 5 s ago"),
    Case("idle-hour-old-sync-nothing-queued", (sync(3000, 3001),), Freshness.FRESH, "idle"),
    Case("queued-after-old-sync", (sync(300, 120),), Freshness.STALE, "work queued 120 s ago still unsynced"),
    Case("queued-just-now-after-idle", (sync(3000, 2),), Freshness.FRESH, "idle"),
    Case("queued-but-sync-recent", (sync(30, 20),), Freshness.FRESH, "last sync 30 s ago"),
    Case(
        "pending-without-queued-metric", (sync(300, None),), Freshness.STALE, "4 changes pending", pending=4
    ),
    Case("old-sync-no-queued-metric-no-pending", (sync(300, None),), Freshness.FRESH, "idle"),
    Case("metrics-unavailable", None, Freshness.UNKNOWN, "metrics unavailable"),
    Case(
        "metrics-unavailable-healthz-ok",
        None,
        Freshness.UNKNOWN,
        "metrics unavailable",
        health=healthz(200, 0),
    ),
    Case("metrics-unavailable-healthz-stale", None, Freshness.STALE, "healthz", health=healthz(503, 400)),
    Case("healthz-503-recent", (sync(5, 6),), Freshness.FRESH, "last sync", health=healthz(503, 30)),
    Case(
        "healthz-503-not-eligible",
        (sync(5, 6),),
        Freshness.FRESH,
        "last sync",
        health=healthz(503, 400, False),
    ),
    Case(
        "healthz-503-old-metrics-fresh", (sync(5, 6),), Freshness.STALE, "healthz", health=healthz(503, 400)
    ),
    Case("only-queued-timestamp", (sync(None, 10),), Freshness.UNKNOWN, "no last sync"),
    Case(
        "dual-stack-one-family-behind",
        (sync(5, 6, "IPv4"), sync(500, 100, "IPv6")),
        Freshness.STALE,
        "(IPv6)",
    ),
    Case(
        "dual-stack-both-fresh",
        (sync(5, 6, "IPv4"), sync(7, 8, "IPv6")),
        Freshness.FRESH,
        "last sync 7 s ago",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_verdict(case: Case) -> None:
    observation = KubeProxyObservation(
        observed_at=NOW,
        metrics=None
        if case.families is None
        else SyncMetrics(case.families, endpoint_changes_pending=case.pending),
        metrics_error="connection refused" if case.families is None else None,
        healthz=case.health,
    )
    verdict = judge(observation, stale_after=STALE_AFTER)
    assert verdict.freshness is case.expected
    assert case.reason in verdict.reason


def test_verdict_uses_now_when_given() -> None:
    observation = KubeProxyObservation(observed_at=NOW, metrics=SyncMetrics((sync(5, 6),)))
    assert (
        judge(observation, STALE_AFTER, now=NOW + 1000).freshness is Freshness.FRESH
    )  # idle, nothing queued
    queued = KubeProxyObservation(observed_at=NOW, metrics=SyncMetrics((sync(5, 1),)))
    assert judge(queued, STALE_AFTER, now=NOW + 1000).freshness is Freshness.STALE


def test_golden_ipvs_page_is_stale_when_probed_late() -> None:
    observation = KubeProxyObservation(
        observed_at=1723900500.0, metrics=parse_metrics(golden("metrics_ipvs.txt"))
    )
    verdict = judge(observation, stale_after=60)
    assert verdict.freshness is Freshness.STALE
    assert "last sync 400 s ago" in verdict.reason
