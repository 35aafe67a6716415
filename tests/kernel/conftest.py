"""Real-kernel tier: IPVS and conntrack adapters against a real Linux kernel.

Every test here needs root and a kernel with IPVS and conntrack loaded; elsewhere each
test is skipped with the reason. Nothing is checked at import time: the checks run when
pytest collects the items, and tool checks run in the fixtures that need the tool.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxymedic.dataplane.conntrack import NetlinkConntrack
from proxymedic.dataplane.ipvs import NetlinkIPVS
from tests.kernel.lab import BACKENDS, Lab, need_tool, run

HERE = Path(__file__).parent
HOW = "run scripts/vm/run-kernel-tests.sh"


def kernel_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return f"needs root and the ip_vs module: {HOW}"
    if not Path("/proc/net/ip_vs").exists():
        return f"needs the ip_vs module loaded (this kernel has no IPVS): {HOW}"
    if not Path("/proc/sys/net/netfilter/nf_conntrack_max").exists():
        return f"needs nf_conntrack loaded: {HOW}"
    if shutil.which("ip") is None:
        return f"needs iproute2 (ip): {HOW}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mine = [it for it in items if Path(str(it.path)).is_relative_to(HERE)]
    for item in mine:
        item.add_marker(pytest.mark.kernel)
    reason = kernel_unavailable_reason() if mine else None
    if reason:
        for item in mine:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """The kernel table's topology (docs/kernel.md); the test process works inside the node namespace."""
    the_lab = Lab.build()
    try:
        the_lab.enter()
        yield the_lab
    finally:
        the_lab.close()


@pytest.fixture
def node(lab: Lab, ipvsadm: str) -> Iterator[Lab]:
    """A clean node per test: no virtual services, default sysctls and timeouts, backends up."""
    run("ipvsadm", "-C")
    run("ipvsadm", "--set", "900", "120", "300")
    for name, value in (("expire_nodest_conn", 0), ("conntrack", 0), ("expire_quiescent_template", 0)):
        Path(f"/proc/sys/net/ipv4/vs/{name}").write_text(f"{value}\n")
    for b in BACKENDS:
        lab.revive_backend(b)
    yield lab
    lab.close_clients()


@pytest.fixture
def ipvs() -> Iterator[NetlinkIPVS]:
    adapter = NetlinkIPVS()
    yield adapter
    adapter.close()


@pytest.fixture
def conntrack() -> NetlinkConntrack:
    return NetlinkConntrack()


@pytest.fixture
def ipvsadm() -> str:
    return need_tool("ipvsadm")


@pytest.fixture
def conntrack_cli() -> str:
    return need_tool("conntrack")
