"""Differential test: the kernel table's scenario scripts give the same client-visible outcomes on the
real kernel as on the modelled dataplane (which the emulator tier and the benchmarks rely on)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from proxymedic.dataplane.conntrack import NetlinkConntrack
from proxymedic.dataplane.ipvs import NetlinkIPVS
from proxymedic.dataplane.types import Endpoint, IPVSTimeouts
from tests.differential.scenarios import (
    BACKEND_IPS,
    EXPECTED,
    LOST,
    SCENARIOS,
    SERVICE,
    VIP,
    VS_CONNTRACK,
    ModelNode,
)
from tests.kernel.lab import BACKENDS, Client, Lab, conns_of, ipvs_conns, need_tool, run, sysctl_write
from tests.kernel.test_ipvs_adapter import ipvsadm_add

QUIET = 0.5


class KernelNode:
    """The driver over the real kernel: IPVS through ``NetlinkIPVS``, set up with ipvsadm."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.ipvs = NetlinkIPVS()
        self.conntrack = NetlinkConntrack()
        self.clients: dict[str, Client] = {}
        self.ct_rule = False

    def close(self) -> None:
        self.ipvs.close()
        if self.ct_rule:
            run("nft", "delete", "table", "inet", "pmkdiff", check=False)

    def set_sysctl(self, name: str, value: int) -> None:
        if name == VS_CONNTRACK and value and not self.ct_rule:
            # A kube-proxy node always has rules that need conntrack; without one the hooks stay off.
            need_tool("nft")
            run("nft", "add table inet pmkdiff")
            run("nft", "add chain inet pmkdiff pre { type filter hook prerouting priority -150 ; }")
            run("nft", "add rule inet pmkdiff pre ct state new counter")
            self.ct_rule = True
        sysctl_write(name, value)

    def create_service(self, *backends: str) -> None:
        ipvsadm_add(SERVICE, *(BACKEND_IPS[b] for b in backends))

    def delete_service(self) -> None:
        run("ipvsadm", "-D", "-u", f"{VIP}:53")

    def add_real_server(self, backend: str) -> None:
        run("ipvsadm", "-a", "-u", f"{VIP}:53", "-r", f"{BACKEND_IPS[backend]}:53", "-m", "-w", "1")

    def remove_real_server(self, backend: str) -> None:
        self.ipvs.remove_real_server(SERVICE, Endpoint(BACKEND_IPS[backend], 53))

    def flush_dead_real_server(self, backend: str) -> None:
        self.ipvs.flush_dead_real_server(SERVICE, Endpoint(BACKEND_IPS[backend], 53))

    def set_udp_timeout(self, seconds: int) -> None:
        self.ipvs.set_timeouts(IPVSTimeouts(tcp=0, tcp_fin=0, udp=seconds))

    def delete_conntrack(self, backend: str) -> int:
        return self.conntrack.delete_udp_entries(VIP, 53, BACKEND_IPS[backend])

    def kill(self, backend: str) -> None:
        self.lab.kill_backend(next(b for b in BACKENDS if b.name == backend))

    def ask(self, client: str) -> str:
        if client not in self.clients:
            self.clients[client] = self.lab.client(4)
        return self.clients[client].ask(QUIET) or LOST

    def entries_to(self, backend: str) -> int:
        """Entries of this scenario's clients only: earlier tests leave entries that live on."""
        ports = {client.port for client in self.clients.values()}
        return sum(1 for c in ipvs_conns() if c.dest == str(BACKEND_IPS[backend]) and c.cport in ports)

    def seconds_left(self, client: str) -> float:
        entries = conns_of(self.clients[client])
        return float(entries[0].expires) if entries else 0.0

    def settle(self) -> None:
        time.sleep(0.2)


@pytest.fixture
def kernel_node(node: Lab) -> Iterator[KernelNode]:
    driver = KernelNode(node)
    try:
        yield driver
    finally:
        driver.close()


@pytest.mark.parametrize("row", sorted(SCENARIOS))
def test_kernel_and_model_agree(kernel_node: KernelNode, row: str) -> None:
    on_kernel = SCENARIOS[row](kernel_node)
    on_model = SCENARIOS[row](ModelNode())
    assert on_kernel == on_model, f"row {row}: kernel {on_kernel} vs model {on_model}"
    assert on_kernel == EXPECTED[row]
