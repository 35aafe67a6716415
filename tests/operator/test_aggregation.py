"""Per-node results become one status and one summary Event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from proxymedic.api.health import IntentResult
from proxymedic.api.intent import IntentOutcome, RemediationIntent
from proxymedic.operator.aggregation import IntentTracking, event_reason, summary_message
from tests.unit.factories import intent, with_change

pytestmark = pytest.mark.unit

DECIDED = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def result(outcome: IntentOutcome, ms: int, flushed: int = 0, message: str = "") -> IntentResult:
    return IntentResult(
        intent="kube-dns-flush-1",
        outcome=outcome,
        completed_at=DECIDED + timedelta(milliseconds=ms),
        flushed_connections=flushed,
        message=message,
    )


def test_counts_completion_and_message() -> None:
    tracking = IntentTracking(RemediationIntent.model_validate(intent()), target_nodes=3)
    assert tracking.record("n1", result(IntentOutcome.APPLIED, 120, flushed=4))
    assert not tracking.record("n1", result(IntentOutcome.APPLIED, 130, flushed=4)), "one result per node"
    assert not tracking.complete()
    tracking.record("n2", result(IntentOutcome.ALREADY_CLEAN, 90))
    tracking.record("n3", result(IntentOutcome.APPLIED, 180, flushed=2))
    assert tracking.complete()
    counts = tracking.counts()
    assert (counts.applied, counts.already_clean, counts.total) == (2, 1, 3)
    assert tracking.duration_seconds() == pytest.approx(0.18)
    assert event_reason(tracking.intent, counts) == "StaleConnectionsFlushed"
    message = summary_message(tracking)
    assert "10.244.1.5 left kube-system/kube-dns (10.96.0.10:53/UDP)" in message
    assert "6 connections flushed" in message
    assert "2 of 3 nodes changed, 1 already clean" in message
    assert "in 180ms" in message


def test_failures_are_named() -> None:
    tracking = IntentTracking(RemediationIntent.model_validate(intent()), target_nodes=2)
    tracking.record("n1", result(IntentOutcome.APPLIED, 50))
    tracking.record("n2", result(IntentOutcome.FAILED, 60, message="netlink: EPERM"))
    assert event_reason(tracking.intent, tracking.counts()) == "RemediationFailed"
    assert "n2: netlink: EPERM" in summary_message(tracking)


def test_dry_run_summary() -> None:
    tracking = IntentTracking(RemediationIntent.model_validate(with_change(intent(), "spec.dryRun", True)), 1)
    tracking.record("n1", result(IntentOutcome.DRY_RUN, 10))
    assert event_reason(tracking.intent, tracking.counts()) == "DryRun"
    message = summary_message(tracking)
    assert "1 of 1 nodes would act (dry-run)" in message
    assert "nothing changed, would have:" in message


def test_counts_of_one_are_singular_and_long_durations_are_rounded() -> None:
    tracking = IntentTracking(RemediationIntent.model_validate(intent()), target_nodes=1)
    one = result(IntentOutcome.APPLIED, 5546, flushed=1).model_copy(update={"removed_real_servers": 1})
    tracking.record("n1", one)
    message = summary_message(tracking)
    assert ": 1 connection flushed, 1 real server removed; 1 of 1 nodes changed" in message
    assert "in 5.5s [intent" in message
