"""Fixtures for the CLI tests: the fixed cluster on an emulator thread, and a way to run the command.

The command runs in-process through ``proxymedic.cli.main.main``, as the installed script
does, with the clock fixed at ``cluster.NOW`` so every age in the output is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from proxymedic.cli.main import main
from proxymedic.emulator.connection import write_kubeconfig
from proxymedic.emulator.runner import EmulatorThread
from tests.cli import cluster


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


Run = Callable[..., Result]


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The fixed cluster, once per module; yields a kubeconfig pointing at it."""
    with EmulatorThread(keep_requests=False) as api:
        cluster.register_crds(api)
        cluster.populate(api)
        yield write_kubeconfig(api.url, tmp_path_factory.mktemp("kube") / "config")


@pytest.fixture
def empty_api(tmp_path: Path) -> Iterator[tuple[EmulatorThread, Path]]:
    """An emulator of its own, without ProxyMedic's CRDs: for the error tests."""
    with EmulatorThread() as api:
        yield api, write_kubeconfig(api.url, tmp_path / "config")


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    def invoke(*argv: str, kubeconfig: Path | None = None) -> Result:
        args = [*argv, "--kubeconfig", str(kubeconfig)] if kubeconfig is not None else list(argv)
        code = main(args, clock=lambda: cluster.NOW)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke
