"""``proxymedic demo --serve``, as a user runs it: a process that keeps the demo cluster running,
prints a kubeconfig, answers ``proxymedic status`` and kubectl, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxymedic.cli.serve import KUBECONFIG_LINE

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(150)]

WAIT = 100.0
"""Seconds the served cluster may take to run the demo's rollout and print its kubeconfig."""


class Served:
    """The ``demo --serve`` process, its output read line by line on a thread."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "proxymedic.cli.main", "demo", "--serve"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self._reader.join(10)  # it ends at the end of the output, which the process's exit closes
        assert self.process.stdout is not None
        self.process.stdout.close()

    def wait_for(self, prefix: str) -> str:
        while True:
            line = self.lines.get(timeout=WAIT)
            assert line is not None, "the process ended:\n" + "\n".join(self.seen)
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def rest(self) -> list[str]:
        """The lines after those read, until the process closed its output."""
        lines = []
        while (line := self.lines.get(timeout=WAIT)) is not None:
            lines.append(line)
        return lines


@pytest.fixture
def served() -> Iterator[Served]:
    process = Served()
    try:
        yield process
    finally:
        process.close()


def proxymedic(*argv: str) -> str:
    """The command in a process of its own, as a user runs it beside the served cluster."""
    command = [sys.executable, "-m", "proxymedic.cli.main", *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout


def test_the_served_demo_answers_status_and_kubectl_until_interrupted(served: Served) -> None:
    kubeconfig = Path(served.wait_for(KUBECONFIG_LINE).removeprefix(KUBECONFIG_LINE))
    assert kubeconfig.is_file()
    served.wait_for("Ctrl-C stops it.")
    assert f"  proxymedic status --kubeconfig {kubeconfig}" in served.seen
    assert f"  proxymedic diagnose node-2 --kubeconfig {kubeconfig}" in served.seen

    status = proxymedic("status", "--kubeconfig", str(kubeconfig))
    assert "coredns   Active" in status
    assert "NODES (4 " in status
    assert "SysctlsEnforced" in status

    if shutil.which("kubectl") is not None:
        events = subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), "get", "events", "-A", "-o", "name"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert "event/node-2." in events  # core Events, where the operator posts them

    served.process.send_signal(signal.SIGINT)
    assert served.process.wait(60) == 0
    assert served.rest() == ["Stopping the demo cluster ..."]
    assert not kubeconfig.exists()
