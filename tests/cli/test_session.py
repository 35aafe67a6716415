"""``proxymedic demo --session``, end to end: the demo cluster, then the real CLI against it."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from proxymedic.cli.demo import Timing
from proxymedic.cli.main import main
from proxymedic.cli.session import SessionTiming, _run

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(90)]


async def test_the_session_shows_status_and_a_held_restart_on_the_stalled_node(
    capsys: pytest.CaptureFixture[str],
) -> None:
    said: list[str] = []
    outputs: list[str] = []

    def command(argv: Sequence[str]) -> int:
        code = main(argv)
        outputs.append(capsys.readouterr().out)
        return code

    timing = SessionTiming(demo=Timing(warm_up=0.5, surge_wait=0.5, lameduck=0.5, settle=0.0), wait=30.0)
    assert await _run(command, timing, said.append) == 0
    assert "$ proxymedic status" in said
    assert "$ proxymedic diagnose node-3" in said
    status, diagnosis = outputs
    node_3 = next(line for line in status.splitlines() if line.startswith("node-3"))
    assert node_3.split()[1:4] == ["stale", "ipvs", "Fresh"]  # healthz and the sync say all is well
    assert "KubeProxyRestarted" in status
    assert "RemediationHeld" in status
    assert diagnosis.startswith("NODE node-3   health: stale   verdict: PROBLEM   scope: node-local")
    assert "1 live backend has no real server" in diagnosis
    assert "restart kube-proxy (held by NodeCooldown)" in diagnosis
