"""Compare command output with the files under tests/cli/snapshots/.

Regenerate them after an intended change of the output with
``PROXYMEDIC_UPDATE_SNAPSHOTS=1 pytest tests/cli`` and review the diff.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

DIRECTORY = Path(__file__).parent / "snapshots"
UPDATE = "PROXYMEDIC_UPDATE_SNAPSHOTS"


def check(name: str, actual: str) -> None:
    path = DIRECTORY / name
    if os.environ.get(UPDATE) == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        return
    if not path.exists():
        pytest.fail(f"no snapshot {path}: run with {UPDATE}=1 to write it, then review it")
    expected = path.read_text()
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=f"{name} (snapshot)",
                tofile=f"{name} (output)",
            )
        )
        pytest.fail(f"output differs from the snapshot (regenerate with {UPDATE}=1):\n{diff}")
