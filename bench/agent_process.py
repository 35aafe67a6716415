"""The agent's code path (AgentRunner, NodeAgent, sensing, executor) in a process of its own, on a
modelled dataplane with a simulated kube-proxy: what ``proxymedic agent`` runs, minus the
kernel adapters. Used to measure the agent's memory and idle CPU where the kernel has no IPVS.

Run: python -m bench.agent_process --kubeconfig PATH --node-name NAME
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import signal
import time

from proxymedic.agent.agent import AgentSettings, NodeAgent
from proxymedic.agent.node import NodeDataplane
from proxymedic.agent.runner import AgentRunner
from proxymedic.dataplane.kubeproxy import KubeProxyObservation
from proxymedic.kube.client import KubeClient
from proxymedic.kube.config import load_connection
from proxymedic.sim.kernel import ModelConfig, ModelledNode
from proxymedic.sim.kubeproxy import KubeProxySim, desired_state

BACKENDS = ("10.244.100.10", "10.244.100.11")


async def main(kubeconfig: str, node_name: str, clients: int) -> None:
    model = ModelledNode(
        time.time, ModelConfig(expire_nodest_conn=1), alive=[ipaddress.ip_address(ip) for ip in BACKENDS]
    )
    kube_proxy = KubeProxySim(node_name, model)
    kube_proxy.restart(
        desired_state(
            {("kube-system", "kube-dns"): (("10.96.0.10",), ((53, 53),))},
            {("kube-system", "kube-dns"): frozenset(BACKENDS)},
        ),
        time.time(),
    )
    vip = ipaddress.ip_address("10.96.0.10")
    base = ipaddress.ip_address("10.244.1.0")
    for i in range(clients):  # a connection table of this many UDP flows
        model.deliver_udp((base + i % 250, 30000 + i), vip, 53)

    async def probe() -> KubeProxyObservation:
        kube_proxy.tick(time.time())
        return kube_proxy.observation(time.time())

    dataplane = NodeDataplane(ipvs=model, connections=model, conntrack=model, sysctls=model, probe=probe)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with KubeClient(load_connection(kubeconfig)) as client:
        runner = AgentRunner(client, NodeAgent(AgentSettings(node_name=node_name), dataplane))
        await runner.run(stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--clients", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(main(args.kubeconfig, args.node_name, args.clients))
