"""The agent reports kube-proxy's change counters and start time as its metrics page gives them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from proxymedic.agent.sensing import SenseSettings, kube_proxy_state
from proxymedic.dataplane.kubeproxy import KubeProxyObservation, parse_metrics

GOLDEN = Path(__file__).parent.parent / "dataplane" / "golden"


@pytest.mark.unit
def test_the_counters_and_the_start_time_reach_the_report() -> None:
    metrics = parse_metrics((GOLDEN / "metrics_iptables.txt").read_text())
    state = kube_proxy_state(KubeProxyObservation(observed_at=1723900060.0, metrics=metrics), SenseSettings())
    assert (state.endpoint_changes_total, state.service_changes_total) == (245, 88)
    assert state.started_at == datetime.fromtimestamp(1.72389e09, UTC)


@pytest.mark.unit
def test_an_unreadable_page_reports_no_counter_rather_than_zero() -> None:
    state = kube_proxy_state(
        KubeProxyObservation(observed_at=1723900060.0, metrics_error="connection refused"), SenseSettings()
    )
    assert (state.endpoint_changes_total, state.service_changes_total, state.started_at) == (None, None, None)
