"""Ages as kubectl prints them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from proxymedic.api.health import NodeProxyHealth, NodeProxyHealthStatus
from proxymedic.runbook.ages import age, human_duration, plural
from proxymedic.runbook.diagnose import step_sync
from tests.unit.factories import node_health

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (5, "5s"),
        (119, "119s"),
        (120, "2m"),
        (192, "3m12s"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60 + 59, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 25 * 60, "3h25m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (2 * 86400, "2d"),
        (3 * 86400 + 5 * 3600, "3d5h"),
        (30 * 86400, "30d"),
        (3 * 365 * 86400 + 86400, "3y1d"),
        (9 * 365 * 86400, "9y"),
    ],
    ids=lambda value: str(value),
)
def test_human_duration_matches_kubectl(seconds: int, shown: str) -> None:
    assert human_duration(timedelta(seconds=seconds)) == shown


def test_age_of_nothing_and_plural() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert age(None, now) == "<unknown>"
    assert age(now - timedelta(minutes=2, seconds=3), now) == "2m3s"
    assert plural(1, "entry", "entries") == "1 entry"
    assert plural(3, "entry", "entries") == "3 entries"


def _kube_proxy(freshness: str, reason: str) -> NodeProxyHealthStatus:
    report = node_health(
        observedAt="2026-11-22T10:00:00Z",
        kubeProxy={
            "freshness": freshness,
            "healthz": "Healthy",
            "reason": reason,
            "lastSyncTime": "2026-11-22T09:58:45Z",
            "lastQueuedTime": "2026-11-22T09:59:00Z",
        },
    )
    status = NodeProxyHealth.model_validate(report).status
    assert status is not None
    return status


def test_the_sync_step_shows_one_age_for_a_fresh_sync() -> None:
    now = datetime(2026, 11, 22, 10, 0, 4, tzinfo=UTC)
    step = step_sync(_kube_proxy("Fresh", "last sync 75 s ago"), [], now)
    assert step.details[0] == "last sync 79s ago, last change queued 64s ago; healthz Healthy"
    assert not any("75 s" in detail for detail in step.details), "the agent's older count is left out"


def test_the_agents_stale_verdict_is_dated_by_its_report() -> None:
    now = datetime(2026, 11, 22, 10, 0, 4, tzinfo=UTC)
    reason = "last sync 75 s ago (> 60 s) with work queued 60 s ago still unsynced"
    step = step_sync(_kube_proxy("Stale", reason), [], now)
    assert f"agent's verdict in its report of 4s ago: {reason}" in step.details
