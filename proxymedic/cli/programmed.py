"""``proxymedic programmed NODE --mode nftables|iptables``: kube-proxy's rules on this node, read back.

The counterpart of ``proxymedic expect``: the same shape, read from the kernel instead of computed
from the API, so that the two can be compared. Its options are in ``options.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from proxymedic.agent.rules import read_programmed
from proxymedic.api.health import ProxyMode
from proxymedic.cli.expect import render_text
from proxymedic.dataplane.types import DataplaneError
from proxymedic.expectation import NodeExpectation, RulesParseError

EXIT_UNREADABLE = 3


def read(mode: str, node: str, local_addresses: tuple[str, ...] = ()) -> NodeExpectation:
    """What kube-proxy programmed in this network namespace; raises DataplaneError or RulesParseError.
    NodePorts are read on ``local_addresses``, or on this namespace's own when none are given."""
    return read_programmed(ProxyMode(mode), node, local_addresses or None)


def run(args: argparse.Namespace, prog: str, stream: TextIO | None = None) -> int:
    out = stream or sys.stdout
    try:
        found = read(args.mode, args.node, tuple(args.local_addresses or ()))
    except (DataplaneError, RulesParseError) as exc:
        print(f"{prog}: error: cannot read kube-proxy's {args.mode} rules: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    if args.output == "json":
        out.write(json.dumps(found.as_json(), indent=2) + "\n")
    else:
        out.write(render_text(found))
    return 0
