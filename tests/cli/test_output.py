"""Terminal behaviour: colour only on a TTY (or when asked), and the program name as a kubectl plugin."""

from __future__ import annotations

import importlib.metadata
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from proxymedic.cli.main import main, program_name
from tests.cli import cluster
from tests.cli.conftest import Run

ANSI = "\033["


@pytest.mark.emulator
def test_no_colour_when_the_output_is_not_a_terminal(run: Run, populated: Path) -> None:
    for command in (["status"], ["diagnose", "node-3"], ["explain", "DryRun"]):
        result = run(*command, kubeconfig=populated if command[0] != "explain" else None)
        assert result.code == 0
        assert ANSI not in result.out


@pytest.mark.emulator
def test_colour_on_request(run: Run, populated: Path) -> None:
    result = run("diagnose", "node-3", "--color", "always", kubeconfig=populated)
    assert "\033[31m[PROBLEM]\033[0m" in result.out
    assert "\033[31mstale\033[0m" in result.out


def _on_a_terminal(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    leader, follower = pty.openpty()
    with os.fdopen(follower, "w") as terminal:
        monkeypatch.setattr(sys, "stdout", terminal)
        assert main(argv, clock=lambda: cluster.NOW) == 0
        terminal.flush()
    monkeypatch.undo()
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return b"".join(chunks).decode()


@pytest.mark.emulator
def test_colour_on_a_terminal_unless_no_color(
    populated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    with capsys.disabled():
        coloured = _on_a_terminal(["status", "--kubeconfig", str(populated)], monkeypatch)
        monkeypatch.setenv("NO_COLOR", "1")
        plain = _on_a_terminal(["status", "--kubeconfig", str(populated)], monkeypatch)
    assert "\033[32mfresh" in coloured
    assert "node-3" in plain
    assert ANSI not in plain


def test_program_name_follows_how_it_was_run() -> None:
    assert program_name("/usr/local/bin/kubectl-proxymedic") == "kubectl proxymedic"
    assert program_name("/work/.venv/bin/proxymedic") == "proxymedic"


def test_errors_and_help_name_the_kubectl_plugin(
    run: Run, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/kubectl-proxymedic"])
    assert run("explain", "Nope").err.startswith("kubectl proxymedic: error: ")
    with pytest.raises(SystemExit):
        main(["diagnose", "--help"])
    assert capsys.readouterr().out.startswith("usage: kubectl proxymedic diagnose ")


def test_both_entry_points_are_installed() -> None:
    scripts = {entry.name: entry.value for entry in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts["proxymedic"] == "proxymedic.cli.main:main"
    assert scripts["kubectl-proxymedic"] == "proxymedic.cli.main:main"
    plugin = Path(sys.executable).parent / "kubectl-proxymedic"
    assert plugin.is_file()
    help_text = subprocess.run(
        [str(plugin), "--help"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert help_text.startswith("usage: kubectl proxymedic ")
    assert "diagnose" in help_text
