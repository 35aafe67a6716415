"""The options of ``status``, ``diagnose``, ``explain`` and ``expect``, apart from their code.

argparse needs every command's options to parse one; ``main`` imports a command's code only when
that command runs, so that the others, the agent first, do not carry modules they never use (the
runbook, the expectation, YAML: 2.4 MB of the agent's RSS when they were imported at start).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from proxymedic.cli.usage import add_command

OUTPUTS = ("text", "json", "yaml")
DEFAULT_EVENT_LIMIT = 10
"""``runbook.status.DEFAULT_EVENT_LIMIT``, not imported from there for the reason above; a test
keeps the two equal, as ``EXPECT_MODE`` and ``expectation.MODE``."""
EXPECT_MODE = "ipvs"

EXPECT_DESCRIPTION = (
    "Print the IPVS virtual servers and real servers kube-proxy should have programmed on NODE right "
    "now, computed from Services, EndpointSlices and Nodes as kube-proxy would: per address family; "
    "ClusterIPs, NodePorts on the node's addresses, externalIPs and load-balancer ingress IPs (not "
    "those with ipMode Proxy); ready endpoints, else serving terminating ones; internal and external "
    "traffic policy Local; topology hints. Compare it with `ipvsadm -Ln` on the node. Virtual servers "
    "are sorted by address (IPv4 before IPv6, numerically), then port and protocol; real servers by "
    "address, then port."
)


def _kube_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="the kubeconfig to use (default: KUBECONFIG, else ~/.kube/config)",
    )
    parser.add_argument(
        "--context", metavar="NAME", help="the kubeconfig context to use (default: its current context)"
    )


def _output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", choices=OUTPUTS, default="text", help="text for people, json or yaml for scripts"
    )
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the text output: auto means on a terminal without NO_COLOR set",
    )


def add_runbook_commands(commands: Any) -> None:
    status = add_command(
        commands,
        "status",
        help="policies, nodes by health, open intents, recent remediations and holds",
        description="Policies and their state, nodes by health (fresh, stale, unknown, agent silent, no "
        "agent), open intents, and recent remediations and holds, with the time since each.",
    )
    _kube_flags(status)
    _output_flags(status)
    status.add_argument(
        "--events", type=int, default=DEFAULT_EVENT_LIMIT, metavar="N", help="how many recent Events to show"
    )

    diagnose = add_command(
        commands,
        "diagnose",
        help="the runbook for one node: what is wrong, where, and what ProxyMedic does about it",
        description="Answer the manual runbook for NODE from its NodeProxyHealth, the EndpointSlices and the "
        "operator's Events: proxy mode, stuck connections, sync freshness, real servers vs EndpointSlices, "
        "conntrack, sysctls, node-local or cluster-wide, and what ProxyMedic did or would do.",
    )
    diagnose.add_argument("node", metavar="NODE", help="the node's name, as `kubectl get nodes` shows it")
    _kube_flags(diagnose)
    _output_flags(diagnose)

    explain = add_command(
        commands,
        "explain",
        help="what an Event reason (or a guardrail rule) means and what to do",
        description="Explain an Event reason ProxyMedic posts, or a rule named in a RemediationHeld "
        "Event; without an argument, list them all.",
    )
    explain.add_argument(
        "reason",
        metavar="EVENT-REASON",
        nargs="?",
        help="an Event reason or a guardrail rule (default: list all)",
    )
    _output_flags(explain)


def add_expect_command(commands: Any) -> None:
    expect = add_command(
        commands,
        "expect",
        help="what kube-proxy should have programmed on a node (IPVS virtual and real servers)",
        description=EXPECT_DESCRIPTION,
    )
    expect.add_argument("node", metavar="NODE", help="the node's name, as its Node object and nodeName")
    expect.add_argument(
        "-f",
        "--filename",
        dest="files",
        type=Path,
        action="append",
        metavar="FILE",
        help="a manifest of Services, EndpointSlices and Nodes; repeatable. Without -f, read the cluster",
    )
    expect.add_argument("--mode", choices=(EXPECT_MODE,), default=EXPECT_MODE, help="kube-proxy's proxy mode")
    expect.add_argument(
        "--node-address",
        dest="node_addresses",
        action="append",
        metavar="IP",
        help="an address NodePorts are programmed on; repeatable (default: the Node's InternalIPs)",
    )
    expect.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="the kubeconfig to use (default: KUBECONFIG, else ~/.kube/config)",
    )
    expect.add_argument(
        "--context", metavar="NAME", help="the kubeconfig context to use (default: its current context)"
    )
    expect.add_argument(
        "-o", "--output", choices=("text", "json"), default="text", help="text for people or json for scripts"
    )
