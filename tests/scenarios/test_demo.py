"""The README's main-job command: the demo's rollout, shortened, with and without ProxyMedic."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from proxymedic.cli.demo import STALLED, Timing, format_events, format_table, run_scenario
from proxymedic.sim.traffic import ClientStats

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(120)]

SHORT = Timing(warm_up=2.5, surge_wait=0.5, lameduck=1.0, settle=7.0)


def loss_share(stats: ClientStats) -> float:
    return stats.failed / stats.sent


async def test_demo_rollout_loses_no_query_where_proxymedic_can_help() -> None:
    without = await run_scenario(False, SHORT)  # what goes wrong shows in a short run
    with_pm = await run_scenario(True, Timing())  # the demo's own timing: the numbers the README shows
    # Without ProxyMedic the drifted node and the stalled one are still failing at the end.
    assert without.stats["node-2"].failing_at_end
    assert without.stats[STALLED].failing_at_end
    # With it, the drifted node loses no query; the pre-5.9 kernel's first-packet drop is the
    # kernel's. The stalled node is restarted once kube-proxy's re-add of the dead real server
    # has lasted the minimum observation (a lagging but healthy kube-proxy re-adds once and
    # then removes it), and its clients lose what went to that real server meanwhile.
    assert with_pm.stats["node-1"].failed == 0
    assert with_pm.stats["node-2"].failed == 0
    assert not with_pm.stats[STALLED].failing_at_end
    # The runs differ in length, so their losses compare as shares of the queries sent.
    assert loss_share(with_pm.stats[STALLED]) < loss_share(without.stats[STALLED]) / 2
    assert with_pm.stats["node-4"].failed <= without.stats["node-4"].failed
    reasons = [e["reason"] for e in with_pm.events]
    assert reasons.count("KubeProxyRestarted") == 1
    assert "SysctlsEnforced" in reasons
    assert "StaleConnectionsFlushed" in reasons
    table = format_table(without, with_pm)
    assert "without ProxyMedic" in table
    assert "still failing" in table
    events = format_events(with_pm.events, datetime.now(UTC))
    assert events.splitlines()[0].split() == [
        "NAMESPACE",
        "LAST",
        "SEEN",
        "TYPE",
        "REASON",
        "OBJECT",
        "MESSAGE",
    ]
