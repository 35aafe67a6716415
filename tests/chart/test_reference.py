"""docs/reference.md is generated from the models and values.yaml: fail when it drifted."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxymedic.cli.reference import render_reference, run, value_docs
from tests.chart.render import CHART_DIR, ROOT

pytestmark = pytest.mark.chart

REFERENCE = ROOT / "docs" / "reference.md"
VALUES = CHART_DIR / "values.yaml"


def test_reference_is_current() -> None:
    assert REFERENCE.read_text() == render_reference(VALUES.read_text()), (
        "docs/reference.md drifted: run `proxymedic reference`"
    )


def test_check_reports_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / "reference.md"
    stale.write_text(REFERENCE.read_text().replace("ProxyHealthPolicy", "ProxyHealthPolcy", 1))
    assert run(stale, VALUES, check=True) == 1
    assert "run `proxymedic reference`" in capsys.readouterr().err
    assert run(REFERENCE, VALUES, check=True) == 0


def test_reference_lists_fields_and_values() -> None:
    text = REFERENCE.read_text()
    assert "| `spec.guardrails.dryRun` | boolean | `false` |" in text
    assert "| `agent.sysctlWrites` | bool | `false` |" in text


def test_nested_keys_of_a_documented_value_are_not_listed() -> None:
    text = "# -- top\na:\n  b: 1\n  # -- not a value of its own\n  c: 2\nd:\n  # -- inner\n  e: {}\n"
    assert value_docs(text) == [("a", "top"), ("d.e", "inner")]
