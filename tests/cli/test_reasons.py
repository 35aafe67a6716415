"""The catalog of Event reasons is complete: every reason the code posts has an entry."""

from __future__ import annotations

from pathlib import Path

import pytest

import proxymedic
from proxymedic.api.reasons import HOLD_RULES, REASONS, lookup
from proxymedic.operator.guardrails import HoldRule
from tests.cli.reason_scan import posted_reasons, scan

pytestmark = pytest.mark.unit

PRODUCT = Path(proxymedic.__file__).parent


def test_every_reason_the_operator_and_agent_post_is_in_the_catalog() -> None:
    posted = scan(PRODUCT / "operator", PRODUCT / "agent")
    unresolved = [p.where for p in posted if p.reason is None]
    assert unresolved == [], "post() with a reason the scan cannot resolve: use a literal or reasons.X"
    missing = sorted({f"{p.reason} ({p.where})" for p in posted if p.reason not in REASONS})
    assert missing == [], "reasons posted but missing from proxymedic/api/reasons.py"
    # The scan sees what is known to be posted, through each way the code posts it.
    names = {p.reason for p in posted}
    assert {"RemediationHeld", "PolicyRejected", "KubeProxyRestarted", "ConntrackPressure"} <= names
    assert {"StaleConnectionsFlushed", "UDPTimeoutSet", "DryRun", "RemediationFailed"} <= names


def test_the_scan_catches_a_reason_missing_from_the_catalog() -> None:
    source = """
def summary_reason(failed):
    if failed:
        return "RemediationFailed"
    return "FreshlyInventedReason"

async def act(recorder, subject, failed):
    await recorder.post(subject, "KubeProxyRestarted", "m")
    for kind, reason in ((1, "ConntrackPressure"), (2, "AnotherNewReason")):
        await recorder.post(subject, reason, "m")
    reason = summary_reason(failed)
    await recorder.post(subject, reason, "m")
    await recorder.post(subject, reasons.DRY_RUN, "m")
    await recorder.post(subject, compute(), "m")
"""
    posted = posted_reasons({"example.py": source})
    # Two new reasons, and one that cannot be resolved (compute()), are caught.
    assert {p.reason for p in posted if p.reason not in REASONS} == {
        "AnotherNewReason",
        "FreshlyInventedReason",
        None,
    }
    assert {"KubeProxyRestarted", "ConntrackPressure", "RemediationFailed", "DryRun"} <= {
        p.reason for p in posted
    }


def test_every_hold_rule_is_explained() -> None:
    assert set(HOLD_RULES) == {str(rule) for rule in HoldRule}


def test_catalog_entries_are_complete() -> None:
    for name, entry in REASONS.items():
        assert entry.name == name
        assert entry.meaning
        assert entry.todo
    assert lookup("remediationheld") is REASONS["RemediationHeld"]
    assert lookup("NodeCooldown") is HOLD_RULES["NodeCooldown"]
    assert lookup("NoSuchReason") is None


def test_a_reason_whose_type_depends_on_the_outcome_says_when_it_is_a_warning() -> None:
    """An intent's summary keeps its reason when nodes did not report before expiry, as a Warning."""
    flushed = REASONS["StaleConnectionsFlushed"]
    assert flushed.types == "Normal or Warning"
    assert "did not report before the intent expired" in flushed.warning_when
    assert REASONS["KubeProxyRestarted"].types == "Warning"
    assert REASONS["SysctlNotEnforced"].types == "Warning"
    assert all(
        "Warning" not in reason.meaning or reason.warning_when or reason.type == "Warning"
        for reason in REASONS.values()
    ), "a Normal reason that can be a Warning says when"
