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
keeps the two equal, as ``EXPECT_MODES`` and ``expectation``'s ``MODE`` and ``RULE_MODES``."""
EXPECT_MODES = ("ipvs", "nftables", "iptables")

EXPECT_DESCRIPTION = (
    "Print the Service addresses and their endpoints (in IPVS mode: the virtual servers and real "
    "servers) kube-proxy should have programmed on NODE right now, computed from Services, "
    "EndpointSlices and Nodes as kube-proxy would: per address family; "
    "ClusterIPs, NodePorts on the node's addresses, externalIPs and load-balancer ingress IPs (not "
    "those with ipMode Proxy); ready endpoints, else serving terminating ones; internal and external "
    "traffic policy Local; topology hints. Compare it with `ipvsadm -Ln` on the node, or with "
    "`proxymedic programmed` in nftables and iptables mode. Virtual servers "
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


PROGRAMMED_DESCRIPTION = (
    "Print what kube-proxy in nftables or iptables mode has programmed in this network namespace: per "
    "Service address and port (ClusterIPs, externalIPs, load-balancer IPs, NodePorts on each address "
    "that accepts them), the endpoints its rules DNAT traffic to, in the shape of `proxymedic expect`. "
    "nftables: kube-proxy's ip and ip6 tables through libnftables; iptables: iptables-save and "
    "ip6tables-save. Needs CAP_NET_ADMIN in the node's network namespace. Exit codes: 0, 3 when the "
    "rules cannot be read."
)


def add_programmed_command(commands: Any) -> None:
    programmed = add_command(
        commands,
        "programmed",
        help="what kube-proxy has programmed on this node (nftables or iptables mode), from its rules",
        description=PROGRAMMED_DESCRIPTION,
    )
    programmed.add_argument("node", metavar="NODE", help="the node's name, printed with the result")
    programmed.add_argument("--mode", choices=EXPECT_MODES[1:], required=True, help="kube-proxy's proxy mode")
    programmed.add_argument(
        "--local-address",
        dest="local_addresses",
        action="append",
        metavar="IP",
        help="an address of this node, for NodePorts kube-proxy accepts on every local address "
        "(--nodeport-addresses unset); repeatable. Default: every address of this network namespace",
    )
    programmed.add_argument(
        "-o", "--output", choices=("text", "json"), default="text", help="text for people or json for scripts"
    )


def add_expect_command(commands: Any) -> None:
    expect = add_command(
        commands,
        "expect",
        help="what kube-proxy should have programmed on a node: per Service address, its endpoints",
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
    expect.add_argument(
        "--mode",
        choices=EXPECT_MODES,
        default=EXPECT_MODES[0],
        help="kube-proxy's proxy mode (nftables and iptables: a Local traffic policy with no local "
        "endpoint drops the traffic, where IPVS falls back to every endpoint)",
    )
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
