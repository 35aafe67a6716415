"""``proxymedic crds``: write the CRDs generated from the models, or check that they are current."""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

from proxymedic.api.crd import render_all

# The chart carries the same CRDs as crds/, so `helm install` creates them.
DEFAULT_DIRECTORIES = (Path("crds"), Path("charts/proxymedic/crds"))


def write_crds(directory: Path) -> list[Path]:
    """Write every CRD into ``directory``; return the files that changed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed: list[Path] = []
    for file_name, text in render_all().items():
        path = directory / file_name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed.append(path)
    return changed


def stale_crds(directory: Path) -> dict[Path, str]:
    """Files under ``directory`` that differ from what the models generate, with a unified diff each."""
    stale: dict[Path, str] = {}
    for file_name, expected in render_all().items():
        path = directory / file_name
        actual = path.read_text() if path.exists() else ""
        if actual != expected:
            diff = difflib.unified_diff(
                actual.splitlines(keepends=True),
                expected.splitlines(keepends=True),
                fromfile=f"{path} (on disk)",
                tofile=f"{path} (from the models)",
            )
            stale[path] = "".join(diff)
    return stale


def run(directory: Path, check: bool) -> int:
    if not check:
        for path in write_crds(directory):
            print(f"wrote {path}")
        return 0
    stale = stale_crds(directory)
    for path, diff in stale.items():
        print(f"{path} differs from the models:", file=sys.stderr)
        print(diff, file=sys.stderr)
    if stale:
        print("run `proxymedic crds` to regenerate", file=sys.stderr)
        return 1
    print(f"{directory}: CRDs match the models")
    return 0
