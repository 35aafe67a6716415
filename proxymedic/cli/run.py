"""``proxymedic operator`` and ``proxymedic agent``: the two processes a cluster runs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from typing import Any

from proxymedic.api.types import parse_duration


def add_operator_command(commands: Any) -> None:
    cmd = commands.add_parser("operator", help="run the operator (one active instance per cluster)")
    cmd.add_argument(
        "--kubeconfig", help="outside a pod: the kubeconfig to use (default: KUBECONFIG or ~/.kube)"
    )
    cmd.add_argument(
        "--liveness-endpoint", default="http://0.0.0.0:8080/healthz", help="liveness URL to serve"
    )
    cmd.add_argument("--metrics-port", type=int, default=9090, help="Prometheus metrics port (0 disables)")
    cmd.add_argument("--standalone", action="store_true", help="no peering (a single replica by other means)")
    cmd.add_argument("--priority", type=int, default=0, help="peering priority of this instance")
    cmd.add_argument("--coalesce-window", default="50ms", help="gather EndpointSlice changes this long")
    cmd.add_argument("--intent-ttl", default="10m", help="how long an intent stays valid")
    cmd.add_argument("--housekeeping-interval", default="5s", help="how often findings are re-judged")


def add_agent_command(commands: Any) -> None:
    cmd = commands.add_parser("agent", help="run the node agent (a privileged DaemonSet pod per node)")
    cmd.add_argument(
        "--node-name", default=os.environ.get("NODE_NAME"), help="this node (default: $NODE_NAME)"
    )
    cmd.add_argument("--kubeconfig", help="outside a pod: the kubeconfig to use")
    cmd.add_argument("--metrics-port", type=int, default=9091, help="Prometheus metrics port (0 disables)")
    cmd.add_argument("--sense-interval", default="10s", help="how often the node is sensed")
    cmd.add_argument("--heartbeat", default="5m", help="write the status at least this often")
    cmd.add_argument(
        "--stale-after", default="60s", help="kube-proxy sync age that, with work pending, is stale"
    )


def _seconds(text: str) -> float:
    return parse_duration(text).total_seconds()


def run_operator_command(args: argparse.Namespace) -> int:
    import kopf

    from proxymedic.kube.config import load_connection
    from proxymedic.operator.controller import ControllerSettings
    from proxymedic.operator.handlers import OperatorOptions, kopf_login_from_kubeconfig, run_operator
    from proxymedic.operator.metrics import OperatorMetrics

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    connection = load_connection(args.kubeconfig)
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
    metrics = AgentMetrics()
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, registry=metrics.registry)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with KubeClient(load_connection(args.kubeconfig)) as client:
            runner = AgentRunner(client, NodeAgent(settings, kernel_dataplane()), metrics)
            await runner.run(stop)

    asyncio.run(main())
    return 0
