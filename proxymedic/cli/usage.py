"""How every ``proxymedic`` command prints its help: a description, and each option's default."""

from __future__ import annotations

import argparse
from typing import Any


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default after its help, as ``(default: 10s)``; not for flags (off unless given),
    options without a default, or help that already says its default in words."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            any(action.default is nothing for nothing in (None, False, argparse.SUPPRESS))
            or "(default" in text
        ):
            return text
        return super()._get_help_string(action)


def add_command(commands: Any, name: str, *, help: str, description: str) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` has a description and shows defaults."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help, description=description, formatter_class=HelpFormatter
    )
    return parser
