"""The modelled dataplane gives the kernel table's outcomes (docs/kernel.md) for every scenario
(no root needed)."""

from __future__ import annotations

import pytest

from tests.differential.scenarios import EXPECTED, SCENARIOS, ModelNode

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("row", sorted(SCENARIOS))
def test_model_reproduces_the_design_table(row: str) -> None:
    assert SCENARIOS[row](ModelNode()) == EXPECTED[row]
