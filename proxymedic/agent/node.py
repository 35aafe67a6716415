"""The node's dataplane as the agent sees it: the adapters, a kube-proxy probe and a clock.

The same agent code runs on the kernel (``kernel_dataplane``) and on the modelled dataplane
(``modelled_dataplane``, for the demo, the emulator tests and the benchmarks).
"""

from __future__ import annotations

import asyncio
import platform
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from proxymedic.agent.rules import RulesReader
from proxymedic.api.health import ProxyMode
from proxymedic.dataplane.kubeproxy import KubeProxyObservation
from proxymedic.dataplane.kubeproxy_probe import ProbeConfig, probe_kube_proxy
from proxymedic.dataplane.types import ConnectionTable, ConntrackAdapter, IPVSAdapter, SysctlAdapter

Probe = Callable[[], Awaitable[KubeProxyObservation]]
T = TypeVar("T")


def unknown_writability() -> bool | None:
    return None


async def inline(call: Callable[[], T]) -> T:
    """Run an adapter call on the event loop: for the modelled dataplane, which is not thread-safe."""
    return call()


async def in_thread(call: Callable[[], T]) -> T:
    """Run an adapter call in a worker thread: pyroute2's sync sockets drive an event loop of their
    own, which cannot run inside the agent's, and a slow /proc read must not stall it."""
    return await asyncio.to_thread(call)


@dataclass
class NodeDataplane:
    ipvs: IPVSAdapter | None
    """None where the node has no IPVS (iptables or nftables mode): IPVS steps are skipped."""
    connections: ConnectionTable | None
    conntrack: ConntrackAdapter | None
    sysctls: SysctlAdapter
    probe: Probe
    clock: Callable[[], float] = time.time
    """Wall-clock seconds; virtual time in simulations."""
    pause: Callable[[float], Awaitable[None]] = asyncio.sleep
    """Wait for the kernel, e.g. for the flush it queues when a real server is removed."""
    run: Callable[[Callable[[], Any]], Awaitable[Any]] = inline
    """How every adapter call is made: ``inline`` or ``in_thread``."""
    kernel_version: str = ""
    sysctls_writable: Callable[[], bool | None] = unknown_writability
    """Whether the agent may write the sysctls it would enforce (None: cannot tell)."""
    rules: RulesReader | None = None
    """kube-proxy's rules in nftables and iptables mode; None: not sensed (unknown, not empty)."""
    proxy_mode: ProxyMode = ProxyMode.UNKNOWN
    """kube-proxy's mode as the latest sensing round read it (the executor waits for a rule mode's
    rules before it flushes)."""


def kernel_dataplane(probe_config: ProbeConfig | None = None) -> NodeDataplane:
    """Adapters over this node's kernel (netlink, /proc) and its kube-proxy on localhost."""
    from proxymedic.agent.rules import read_programmed
    from proxymedic.dataplane.conntrack import NetlinkConntrack
    from proxymedic.dataplane.ipvs import NetlinkIPVS
    from proxymedic.dataplane.procfs import ProcConnectionTable
    from proxymedic.dataplane.sysctl import EXPIRE_NODEST_CONN, ProcSysctl

    config = probe_config or ProbeConfig()
    sysctls = ProcSysctl()

    async def probe() -> KubeProxyObservation:
        return await probe_kube_proxy(config)

    return NodeDataplane(
        ipvs=NetlinkIPVS(),
        connections=ProcConnectionTable(),
        conntrack=NetlinkConntrack(),
        sysctls=sysctls,
        probe=probe,
        kernel_version=platform.release(),
        run=in_thread,
        sysctls_writable=partial(sysctls.writable, EXPIRE_NODEST_CONN),
        rules=read_programmed,
    )
