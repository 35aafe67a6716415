"""Is kube-proxy keeping up? Parsing of its metrics and healthz, and a pure freshness verdict.

What kube-proxy really does (pkg/proxy/*/proxier.go, pkg/proxy/healthcheck):

- It syncs when Services or EndpointSlices change (each change calls ``Sync()``, which sets
  ``kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds``), no more often than
  ``minSyncPeriod`` (default 1 s). Without changes, the iptables and nftables proxiers
  resync only about once an hour; the IPVS proxier every ``syncPeriod`` (default 30 s).
  So an old ``..._last_timestamp_seconds`` alone means "idle", not "stale".
- ``/healthz`` answers 503 once queued work has waited longer than its health timeout
  (2 x syncPeriod) and, in recent releases, also when the node is not eligible
  (``"nodeEligible": false``, e.g. being deleted); when healthy it reports
  ``lastUpdated`` = ``currentTime``, so ``lastUpdated`` only means something on a 503.
- Dual-stack proxiers label the sync metrics with ``ip_family``; each family is judged
  on its own.

Missing data is Unknown, never Stale (docs/architecture.md, "The contract"): no restart on a page
that cannot be read.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from prometheus_client.parser import text_string_to_metric_families

LAST_SYNC = "kubeproxy_sync_proxy_rules_last_timestamp_seconds"
LAST_QUEUED = "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds"
ENDPOINT_CHANGES_PENDING = "kubeproxy_sync_proxy_rules_endpoint_changes_pending"
SERVICE_CHANGES_PENDING = "kubeproxy_sync_proxy_rules_service_changes_pending"
IPTABLES_RESTORE_FAILURES = "kubeproxy_sync_proxy_rules_iptables_restore_failures_total"
NFTABLES_SYNC_FAILURES = "kubeproxy_sync_proxy_rules_nftables_sync_failures_total"
SYNC_DURATION_COUNT = "kubeproxy_sync_proxy_rules_duration_seconds_count"
SYNC_DURATION_SUM = "kubeproxy_sync_proxy_rules_duration_seconds_sum"
ENDPOINT_CHANGES_TOTAL = "kubeproxy_sync_proxy_rules_endpoint_changes_total"
SERVICE_CHANGES_TOTAL = "kubeproxy_sync_proxy_rules_service_changes_total"
PROCESS_START = "process_start_time_seconds"

# Time a healthy proxier needs to pick up freshly queued work (minSyncPeriod defaults to 1 s).
DEFAULT_SETTLE_SECONDS = 10.0
# 2 x the default syncPeriod, the same bound kube-proxy's own healthz uses.
DEFAULT_STALE_AFTER_SECONDS = 60.0


class ProxyMode(enum.StrEnum):
    IPTABLES = "iptables"
    IPVS = "ipvs"
    NFTABLES = "nftables"
    KERNELSPACE = "kernelspace"
    OTHER = "other"

    @classmethod
    def parse(cls, text: str) -> ProxyMode | None:
        value = text.strip().lower()
        if not value or len(value) > 32 or not value.isascii() or not value.isalnum():
            return None
        try:
            return cls(value)
        except ValueError:
            return cls.OTHER


class Freshness(enum.StrEnum):
    FRESH = "Fresh"
    STALE = "Stale"
    UNKNOWN = "Unknown"


@dataclass(frozen=True)
class FamilySync:
    """Sync timestamps of one IP family ("" when the metrics carry no ip_family label)."""

    family: str
    last_sync: float | None
    last_queued: float | None


@dataclass(frozen=True)
class SyncMetrics:
    families: tuple[FamilySync, ...]
    endpoint_changes_pending: float | None = None
    service_changes_pending: float | None = None
    restore_failures: float | None = None
    nftables_sync_failures: float | None = None
    sync_count: float | None = None
    sync_seconds_sum: float | None = None
    endpoint_changes_total: float | None = None
    """EndpointSlice events kube-proxy's informer delivered since it started (resyncs included):
    flat while the cluster's slices change means its watch is dead (``operator/watch.py``)."""
    service_changes_total: float | None = None
    process_start: float | None = None
    """When this kube-proxy process started: a counter is compared only within one process."""

    @property
    def pending_changes(self) -> float:
        return (self.endpoint_changes_pending or 0.0) + (self.service_changes_pending or 0.0)


class MetricsPageError(ValueError):
    """The metrics page is not Prometheus text or lacks the sync timestamp."""


@dataclass(frozen=True)
class Healthz:
    status: int
    last_updated: float | None
    current_time: float | None
    node_eligible: bool | None = None

    @property
    def healthy(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class KubeProxyObservation:
    """Everything one probe saw; an ``*_error`` says why the matching part is None."""

    observed_at: float
    metrics: SyncMetrics | None = None
    metrics_error: str | None = None
    mode: ProxyMode | None = None
    mode_error: str | None = None
    healthz: Healthz | None = None
    healthz_error: str | None = None


@dataclass(frozen=True)
class Verdict:
    freshness: Freshness
    reason: str
    evidence: Mapping[str, float] = field(default_factory=dict)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# 9999-12-31T23:59:59Z: no clock shows a later time, and Python cannot represent one.
_LAST_PLAUSIBLE_TIMESTAMP = 253402300799.0


def _timestamp(value: float) -> float | None:
    """A Unix timestamp, or None for one no clock could show (negative, or past year 9999)."""
    return value if 0.0 <= value <= _LAST_PLAUSIBLE_TIMESTAMP else None


def _count(value: float | None) -> float | None:
    """A counter's value, or None for one no counter can hold (negative)."""
    return value if value is not None and value >= 0 else None


def parse_metrics(text: str) -> SyncMetrics:
    """Extract the sync metrics; raise MetricsPageError on garbage or a missing sync timestamp."""
    last_sync: dict[str, float] = {}
    last_queued: dict[str, float] = {}
    sums: dict[str, float] = {}
    wanted_sums = {
        ENDPOINT_CHANGES_PENDING,
        SERVICE_CHANGES_PENDING,
        IPTABLES_RESTORE_FAILURES,
        NFTABLES_SYNC_FAILURES,
        SYNC_DURATION_COUNT,
        SYNC_DURATION_SUM,
        ENDPOINT_CHANGES_TOTAL,
        SERVICE_CHANGES_TOTAL,
    }
    process_start: float | None = None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                value = _finite(float(sample.value))
                if value is None:
                    continue
                ip_family = str(sample.labels.get("ip_family", ""))
                if sample.name in (LAST_SYNC, LAST_QUEUED) and _timestamp(value) is None:
                    continue  # an impossible time is no evidence: treated as absent
                if sample.name == LAST_SYNC:
                    last_sync[ip_family] = value
                elif sample.name == LAST_QUEUED:
                    last_queued[ip_family] = value
                elif sample.name in wanted_sums:
                    sums[sample.name] = sums.get(sample.name, 0.0) + value
                elif sample.name == PROCESS_START:
                    process_start = _timestamp(value)
    except Exception as exc:  # the parser raises several types on garbage; all mean "malformed"
        raise MetricsPageError(f"not a Prometheus text page: {type(exc).__name__}: {exc}"[:300]) from None
    if not last_sync:
        raise MetricsPageError(f"{LAST_SYNC} is missing")
    families = tuple(
        FamilySync(family=name, last_sync=last_sync.get(name), last_queued=last_queued.get(name))
        for name in sorted(set(last_sync) | set(last_queued))
    )
    return SyncMetrics(
        families=families,
        endpoint_changes_pending=sums.get(ENDPOINT_CHANGES_PENDING),
        service_changes_pending=sums.get(SERVICE_CHANGES_PENDING),
        restore_failures=sums.get(IPTABLES_RESTORE_FAILURES),
        nftables_sync_failures=sums.get(NFTABLES_SYNC_FAILURES),
        sync_count=sums.get(SYNC_DURATION_COUNT),
        sync_seconds_sum=sums.get(SYNC_DURATION_SUM),
        endpoint_changes_total=_count(sums.get(ENDPOINT_CHANGES_TOTAL)),
        service_changes_total=_count(sums.get(SERVICE_CHANGES_TOTAL)),
        process_start=process_start,
    )


# Go's time.Time.String(): "2024-05-01 10:00:00.123456789 +0000 UTC m=+12.3"; RFC 3339 also accepted.
_GO_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?\s*(Z|[+-]\d{2}:?\d{2})?"
)


def parse_go_time(text: str) -> float | None:
    """Seconds since the epoch; None for Go's zero time (never updated) or unparsable text."""
    match = _GO_TIME.match(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        tz = UTC
        if offset and offset != "Z":
            sign = -1 if offset[0] == "-" else 1
            digits = offset[1:].replace(":", "")
            tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=tz)
    except ValueError:
        return None
    if moment.year <= 1:
        return None
    return moment.timestamp() + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def parse_healthz(status: int, body: str) -> Healthz:
    """Interpret a /healthz answer; raise ValueError if it is not kube-proxy's."""
    if status not in (200, 503):
        raise ValueError(f"healthz answered HTTP {status}")
    try:
        document = json.loads(body)
    except ValueError:
        raise ValueError("healthz body is not JSON") from None
    if not isinstance(document, dict) or "lastUpdated" not in document:
        raise ValueError("healthz body has no lastUpdated")
    eligible = document.get("nodeEligible")
    return Healthz(
        status=status,
        last_updated=parse_go_time(str(document.get("lastUpdated", ""))),
        current_time=parse_go_time(str(document.get("currentTime", ""))),
        node_eligible=eligible if isinstance(eligible, bool) else None,
    )


def _healthz_stale(healthz: Healthz, stale_after: float, now: float) -> str | None:
    """kube-proxy's own judgement: 503 with an old lastUpdated while the node is eligible."""
    if healthz.healthy or healthz.node_eligible is False or healthz.last_updated is None:
        return None
    reference = healthz.current_time if healthz.current_time is not None else now
    age = reference - healthz.last_updated
    if age <= stale_after:
        return None
    return f"healthz reports unhealthy: last update {age:.0f} s ago (> {stale_after:.0f} s)"


def _family_label(family: FamilySync) -> str:
    return f" ({family.family})" if family.family else ""


def judge(
    observation: KubeProxyObservation,
    stale_after: float = DEFAULT_STALE_AFTER_SECONDS,
    now: float | None = None,
    settle: float = DEFAULT_SETTLE_SECONDS,
) -> Verdict:
    """Fresh, Stale or Unknown, with a reason a person can act on. Pure: no clock, no I/O.

    Stale needs evidence of work kube-proxy should have done: the last sync is older than
    ``stale_after`` AND work is pending (queued after that sync at least ``settle``
    seconds ago, or pending-change gauges above zero when the queued timestamp is not
    exported), or healthz itself reports an old, unprocessed update.
    """
    now = observation.observed_at if now is None else now
    healthz = observation.healthz
    healthz_reason = None if healthz is None else _healthz_stale(healthz, stale_after, now)
    metrics = observation.metrics
    if metrics is None:
        if healthz_reason is not None:
            return Verdict(Freshness.STALE, healthz_reason)
        return Verdict(
            Freshness.UNKNOWN, f"kube-proxy metrics unavailable: {observation.metrics_error or 'not probed'}"
        )
    synced = [family for family in metrics.families if family.last_sync is not None]
    if not synced:
        if healthz_reason is not None:
            return Verdict(Freshness.STALE, healthz_reason)
        return Verdict(Freshness.UNKNOWN, "kube-proxy exports no last sync timestamp")

    reasons: list[str] = []
    evidence: dict[str, float] = {"pending_changes": metrics.pending_changes}
    oldest_age = 0.0
    for family in synced:
        assert family.last_sync is not None
        age = now - family.last_sync
        oldest_age = max(oldest_age, age)
        evidence[f"sync_age{_family_label(family).strip()}"] = age
        if age <= stale_after:
            continue
        if family.last_queued is not None:
            waiting = now - family.last_queued
            if family.last_queued > family.last_sync and waiting >= settle:
                reasons.append(
                    f"last sync{_family_label(family)} {age:.0f} s ago (> {stale_after:.0f} s) "
                    f"with work queued {waiting:.0f} s ago still unsynced"
                )
        elif metrics.pending_changes > 0:
            reasons.append(
                f"last sync{_family_label(family)} {age:.0f} s ago (> {stale_after:.0f} s) "
                f"with {metrics.pending_changes:.0f} changes pending"
            )
    if healthz_reason is not None:
        reasons.append(healthz_reason)
    if reasons:
        return Verdict(Freshness.STALE, "; ".join(reasons), evidence)
    if oldest_age <= stale_after:
        return Verdict(Freshness.FRESH, f"last sync {oldest_age:.0f} s ago", evidence)
    return Verdict(
        Freshness.FRESH,
        f"idle: last sync {oldest_age:.0f} s ago but no work waiting "
        "(kube-proxy only syncs on changes plus a periodic resync)",
        evidence,
    )
