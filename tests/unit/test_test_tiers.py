"""scripts/lib/tiers.sh: every tier runs, each gets one summary line, and only failures fail."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

TIERS = Path(__file__).parents[2] / "scripts" / "lib" / "tiers.sh"


def run_tiers(body: str) -> subprocess.CompletedProcess[str]:
    script = f"set -uo pipefail\nsource {TIERS}\n{body}\ntier_summary\n"
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30, check=False)


def summary(output: str) -> list[str]:
    return output.split("== summary\n", 1)[1].splitlines()


def test_every_tier_runs_and_is_summarised_and_a_failure_fails_the_run() -> None:
    result = run_tiers(
        """
        tier lint -- false
        tier pytest -- bash -c 'echo "1 passed in 0.01s"'
        tier kernel -- bash -c 'echo "needs root" > "$TIER_SKIP_REASON"; echo booting; exit 77'
        tier cluster -- bash -c 'echo starting; echo "no kube-apiserver binary"; echo; exit 77'
        tier extra --no-tests-ok -- bash -c 'exit 5'
        tier main -- bash -c 'exit 5'
        """
    )
    assert result.returncode == 1, result
    assert "1 passed in 0.01s" in result.stdout, "a tier's own output stays visible"
    assert summary(result.stdout) == [
        "lint: failed (exit 1)",
        "pytest: passed",
        "kernel: skipped (needs root)",
        "cluster: skipped (no kube-apiserver binary)",
        "extra: passed",
        "main: failed (exit 5)",
    ]


def test_passed_and_skipped_tiers_pass_the_run() -> None:
    result = run_tiers("tier a -- true\ntier b -- bash -c 'exit 77'")
    assert result.returncode == 0, result
    assert summary(result.stdout) == ["a: passed", "b: skipped (no reason given)"]
