"""``proxymedic operator`` and ``proxymedic agent``: the two processes a cluster runs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

from proxymedic.api.types import parse_duration
from proxymedic.cli.usage import add_command
from proxymedic.kube.config import KUBECONFIG_EXIT_CODE, KubeconfigError

DURATION = "a duration: 250ms, 30s, 5m, 1h30m"


def add_operator_command(commands: Any) -> None:
    cmd = add_command(
        commands,
        "operator",
        help="run the operator (one active instance per cluster)",
        description="Run ProxyMedic's operator: watch EndpointSlices, Services, nodes' NodeProxyHealth "
        "reports and the ProxyHealthPolicies, decide repairs within each policy's guardrails, issue "
        "RemediationIntents and post Events. In a pod it uses the pod's service account; elsewhere a "
        "kubeconfig. Exit codes: 0 when stopped, 4 when the kubeconfig is missing or unusable.",
    )
    cmd.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="outside a pod: the kubeconfig to use (default: KUBECONFIG, else ~/.kube/config)",
    )
    cmd.add_argument(
        "--liveness-endpoint",
        default="http://0.0.0.0:8080/healthz",
        metavar="URL",
        help="liveness URL to serve",
    )
    cmd.add_argument(
        "--metrics-port",
        type=int,
        default=9090,
        metavar="PORT",
        help="Prometheus metrics TCP port; 0 disables",
    )
    cmd.add_argument(
        "--standalone", action="store_true", help="no Kopf peering (a single replica by other means)"
    )
    cmd.add_argument(
        "--priority", type=int, default=0, metavar="N", help="Kopf peering priority of this instance"
    )
    cmd.add_argument(
        "--coalesce-window",
        default="50ms",
        metavar="DURATION",
        help=f"gather one Service's EndpointSlice changes this long before deciding; {DURATION}",
    )
    cmd.add_argument(
        "--intent-ttl",
        default="10m",
        metavar="DURATION",
        help=f"how long a RemediationIntent stays valid; {DURATION}",
    )
    cmd.add_argument(
        "--housekeeping-interval",
        default="5s",
        metavar="DURATION",
        help=f"how often findings are re-judged, intents expire and statuses are written; {DURATION}",
    )


def add_agent_command(commands: Any) -> None:
    cmd = add_command(
        commands,
        "agent",
        help="run the node agent (one DaemonSet pod per node)",
        description="Run ProxyMedic's agent for one node: sense kube-proxy, IPVS, conntrack and sysctls, "
        "report them as the node's NodeProxyHealth, and execute the RemediationIntents addressed to the "
        "node. It needs CAP_NET_ADMIN and the host's network namespace; writing sysctls also needs a "
        "writable /proc/sys. Exit codes: 0 when stopped, 2 without a node name, 4 when the kubeconfig "
        "is missing or unusable.",
    )
    cmd.add_argument(
        "--node-name",
        default=os.environ.get("NODE_NAME"),
        help="this node's name (default: $NODE_NAME, set from spec.nodeName in the DaemonSet)",
    )
    cmd.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="outside a pod: the kubeconfig to use (default: KUBECONFIG, else ~/.kube/config)",
    )
    cmd.add_argument(
        "--metrics-port",
        type=int,
        default=9091,
        metavar="PORT",
        help="Prometheus metrics TCP port; 0 disables",
    )
    cmd.add_argument(
        "--sense-interval",
        default="10s",
        metavar="DURATION",
        help=f"how often the node is sensed; {DURATION}",
    )
    cmd.add_argument(
        "--heartbeat",
        default="5m",
        metavar="DURATION",
        help=f"write the status at least this often, and on every material change; {DURATION}",
    )
    cmd.add_argument(
        "--stale-after",
        default="60s",
        metavar="DURATION",
        help=f"kube-proxy sync age that, with work pending, counts as stale; {DURATION}",
    )


def _kubeconfig_failed(exc: Exception) -> int:
    print(f"proxymedic: error: {exc}", file=sys.stderr)
    return KUBECONFIG_EXIT_CODE


def _seconds(text: str) -> float:
    return parse_duration(text).total_seconds()


def run_operator_command(args: argparse.Namespace) -> int:
    import kopf

    from proxymedic.kube.config import load_connection
    from proxymedic.operator.controller import ControllerSettings
    from proxymedic.operator.handlers import OperatorOptions, kopf_login_from_kubeconfig, run_operator
    from proxymedic.operator.metrics import OperatorMetrics

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        connection = load_connection(args.kubeconfig)
    except KubeconfigError as exc:
        return _kubeconfig_failed(exc)
    login = kopf_login_from_kubeconfig(args.kubeconfig) if args.kubeconfig else kopf.login_via_client
    options = OperatorOptions(
        controller=ControllerSettings(
            coalesce_window=_seconds(args.coalesce_window), intent_ttl=parse_duration(args.intent_ttl)
        ),
        housekeeping_interval=_seconds(args.housekeeping_interval),
        standalone=args.standalone,
        priority=args.priority,
        liveness_endpoint=args.liveness_endpoint or None,
    )
    metrics = OperatorMetrics()
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, registry=metrics.registry)
    asyncio.run(run_operator(connection, login, options, metrics=metrics))
    return 0


def run_agent_command(args: argparse.Namespace) -> int:
    from proxymedic.agent.agent import AgentSettings, NodeAgent
    from proxymedic.agent.metrics import AgentMetrics
    from proxymedic.agent.node import kernel_dataplane
    from proxymedic.agent.runner import AgentRunner
    from proxymedic.agent.sensing import SenseSettings
    from proxymedic.kube.client import KubeClient
    from proxymedic.kube.config import load_connection

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not args.node_name:
        logging.error("the node name is required: set NODE_NAME (from spec.nodeName) or --node-name")
        return 2
    settings = AgentSettings(
        node_name=args.node_name,
        sense_interval=_seconds(args.sense_interval),
        heartbeat=_seconds(args.heartbeat),
        sense=SenseSettings(stale_after_seconds=_seconds(args.stale_after)),
    )
    try:
        connection = load_connection(args.kubeconfig)
    except KubeconfigError as exc:
        return _kubeconfig_failed(exc)
    metrics = AgentMetrics()
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, registry=metrics.registry)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with KubeClient(connection) as client:
            runner = AgentRunner(client, NodeAgent(settings, kernel_dataplane()), metrics)
            await runner.run(stop)

    asyncio.run(main())
    return 0
