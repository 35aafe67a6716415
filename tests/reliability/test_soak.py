"""The soak: 30 minutes of simulated cluster time (time scaled x30, about a minute of wall time) of
rollouts, kube-proxy stalls, operator and agent kills and API fault bursts at seeded random points.

``PROXYMEDIC_SOAK_MINUTES`` sets a longer stretch (cluster minutes), ``PROXYMEDIC_SOAK_SEED`` the seed.
"""

from __future__ import annotations

import os

import pytest

from tests.reliability.faults_scenarios import record
from tests.reliability.soak_script import soak

MINUTES = float(os.environ.get("PROXYMEDIC_SOAK_MINUTES", "30"))
SEED = int(os.environ.get("PROXYMEDIC_SOAK_SEED", "2024"))

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(int(120 + 2.5 * MINUTES * 60 / 30))]


async def test_soak_nothing_lost_and_restarts_within_the_guardrails() -> None:
    figures = await soak(MINUTES, SEED)
    record("soak", figures.line())
    print(figures.line())
    assert figures.actions["rollouts"] >= 2
    assert figures.actions["operator kills"] + figures.actions["agent kills"] >= 1 or MINUTES < 10
    assert figures.dead_backends >= 4
