"""Every command's ``--help`` describes the command and shows its options' defaults with units."""

from __future__ import annotations

import argparse

import pytest

from proxymedic.cli.main import build_parser

pytestmark = pytest.mark.unit


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_command_has_a_description(name: str) -> None:
    command = _commands()[name]
    assert command.description is not None, name
    assert len(command.description) > 40, name
    assert " ".join(command.description.split()[:6]) in " ".join(command.format_help().split())


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("operator", ["(default: 50ms)", "(default: 10m)", "(default: 5s)", "(default: 9090)"]),
        ("agent", ["(default: 10s)", "(default: 5m)", "(default: 60s)", "(default: 9091)"]),
        ("status", ["(default: text)", "(default: auto)", "(default: 10)"]),
    ],
)
def test_defaults_are_shown_with_their_units(command: str, shown: list[str]) -> None:
    text = " ".join(_commands()[command].format_help().split())
    for default in shown:
        assert default in text, (default, text)
    assert "(default: None)" not in text
    assert "(default: False)" not in text


def test_durations_say_which_units_they_take() -> None:
    text = " ".join(_commands()["agent"].format_help().split())
    assert "how often the node is sensed; a duration: 250ms, 30s, 5m, 1h30m (default: 10s)" in text
