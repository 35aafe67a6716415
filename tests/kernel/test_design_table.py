"""The kernel table of docs/kernel.md, measured: rows A, B, C and D1-D6 reproduced on a real kernel,
with the repairs (F1, F2, F7 and the UDP timeout) done through the adapters.

Each test makes a stale flow the same way: the client (one fixed source port) is scheduled
to backend 1, backend 1 dies, and (unless the row says otherwise) its real server is removed,
as kube-proxy does. The IPVS connection table is read from /proc/net/ip_vs_conn and checked
against ``ipvsadm -Lnc``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from proxymedic.dataplane.conntrack import NetlinkConntrack
from proxymedic.dataplane.ipvs import NetlinkIPVS
from proxymedic.dataplane.sysctl import ProcSysctl
from proxymedic.dataplane.types import Endpoint, IPVSTimeouts, L4Protocol, ServiceKey
from tests.kernel.lab import (
    BACKENDS,
    VIP4,
    VIP6,
    Client,
    IPVSConn,
    Lab,
    conns_of,
    ipvs_conns,
    need_tool,
    report,
    run,
    sysctl_write,
    wait_until,
)
from tests.kernel.test_ipvs_adapter import ipvsadm_add

B1, B2 = BACKENDS
VERSIONS = pytest.mark.parametrize("version", [4, 6], ids=["ipv4", "ipv6"])
QUIET = 0.5  # seconds a client waits before calling a query lost


@dataclass
class Stale:
    svc: ServiceKey
    client: Client
    dead: Endpoint
    live: Endpoint
    live_client: Client

    def conns_to(self, ep: Endpoint, client: Client | None = None) -> list[IPVSConn]:
        c = client or self.client
        return [x for x in conns_of(c) if x.dest == str(ep.ip) and x.dport == ep.port]


def make_stale(lab: Lab, ipvs: NetlinkIPVS, version: int = 4, remove_rs: bool = True) -> Stale:
    """The client's flow goes to backend1; a second client's flow goes to backend2; backend1 dies."""
    v6 = version == 6
    svc = ServiceKey(L4Protocol.UDP, VIP6 if v6 else VIP4, 53)
    dead = Endpoint(B1.ip6 if v6 else B1.ip4, 53)
    live = Endpoint(B2.ip6 if v6 else B2.ip4, 53)
    ipvsadm_add(svc, dead.ip)
    client = lab.client(version)
    assert client.ask() == "backend1"
    run("ipvsadm", "-a", "-u", str(svc).rsplit("/", 1)[0], "-r", str(live), "-m", "-w", "1")
    ipvs.set_weight(svc, dead, 0)  # so the live client lands on backend2 deterministically
    live_client = lab.client(version)
    assert live_client.ask() == "backend2"
    ipvs.set_weight(svc, dead, 1)
    stale = Stale(svc, client, dead, live, live_client)
    assert len(stale.conns_to(dead)) == 1
    lab.kill_backend(B1)
    if remove_rs:
        assert ipvs.remove_real_server(svc, dead) is True  # what kube-proxy does for UDP
    return stale


def assert_live_untouched(stale: Stale) -> None:
    assert stale.conns_to(stale.live, stale.live_client), "the live backend's entry must stay"
    assert stale.live_client.ask() == "backend2"


def oracle_conns() -> set[tuple[str, str, str]]:
    """(client, vip, dest) triples from ``ipvsadm -Lnc``."""
    out = set()
    for line in run("ipvsadm", "-Lnc").splitlines():
        f = line.split()
        if f and f[0] in ("UDP", "TCP"):
            out.add((f[3], f[4], f[5]))
    return out


def proc_conns_as_oracle() -> set[tuple[str, str, str]]:
    def ep(ip: str, port: int) -> str:
        return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"

    return {(ep(c.client, c.cport), ep(c.vip, c.vport), ep(c.dest, c.dport)) for c in ipvs_conns()}


def test_row_A_removed_rs_without_expire_nodest_conn_keeps_stale_entry(node: Lab, ipvs: NetlinkIPVS) -> None:
    """Row A: expire_nodest_conn=0, real server removed: every retry times out; entry keeps ~300 s."""
    stale = make_stale(node, ipvs)
    for _ in range(3):
        assert stale.client.ask(QUIET) is None
    (entry,) = stale.conns_to(stale.dead)
    assert entry.expires > 250
    report("row A: seconds left on the stale entry after 3 retries", entry.expires)
    assert proc_conns_as_oracle() == oracle_conns()
    assert_live_untouched(stale)


@VERSIONS
def test_row_B_expire_nodest_conn_flushes_on_rs_removal(node: Lab, ipvs: NetlinkIPVS, version: int) -> None:
    """Row B / F1+F2 repair: expire_nodest_conn=1 and the RS removed by the adapter: the entry goes
    without a packet (kernel >= 5.9 queues the flush) and the next query reaches backend2."""
    sysctl_write("net.ipv4.vs.expire_nodest_conn", 1)
    stale = make_stale(node, ipvs, version)
    took = wait_until(lambda: not stale.conns_to(stale.dead), timeout=5)
    assert took is not None, "stale entry not flushed"
    report(f"row B ipv{version}: seconds until the stale entry was gone", round(took, 3))
    assert stale.client.ask() == "backend2"
    assert_live_untouched(stale)


def test_row_C_stalled_kube_proxy_then_rs_removal_fixes(node: Lab, ipvs: NetlinkIPVS) -> None:
    """Row C / F2: backend dead, RS NOT removed: timeouts; removing it (expire_nodest_conn=1) fixes it."""
    stale = make_stale(node, ipvs, remove_rs=False)
    assert stale.client.ask(QUIET) is None
    assert stale.client.ask(QUIET) is None
    assert stale.conns_to(stale.dead)
    sysctl_write("net.ipv4.vs.expire_nodest_conn", 1)
    assert ipvs.remove_real_server(stale.svc, stale.dead) is True
    assert wait_until(lambda: not stale.conns_to(stale.dead), timeout=5) is not None
    assert stale.client.ask() == "backend2"
    assert_live_untouched(stale)


def test_row_D1_lower_udp_timeout_bounds_new_entries_only(node: Lab, ipvs: NetlinkIPVS) -> None:
    """Row D1: lowering the IPVS UDP timeout to 5 s (IPVS_CMD_SET_CONFIG): the stale entry keeps its
    ~300 s; only a new entry gets <= 5 s. Observed from the entries' expiry, not by waiting."""
    stale = make_stale(node, ipvs)
    before = ipvs.get_timeouts()
    ipvs.set_timeouts(IPVSTimeouts(tcp=0, tcp_fin=0, udp=5))
    assert ipvs.get_timeouts().udp == 5
    assert stale.client.ask(QUIET) is None
    (entry,) = stale.conns_to(stale.dead)
    assert entry.expires > 250
    fresh = node.client()
    assert fresh.ask() == "backend2"
    (new_entry,) = conns_of(fresh)
    assert new_entry.expires <= 5
    report(
        "row D1: seconds left, stale entry / new entry, after udp timeout 5",
        [entry.expires, new_entry.expires],
    )
    ipvs.set_timeouts(before)
    assert ipvs.get_timeouts() == before


def test_row_D2_expire_nodest_conn_afterwards_reschedules_next_packet(node: Lab, ipvs: NetlinkIPVS) -> None:
    """Row D2 / F7 repair: expire_nodest_conn=1 set afterwards (through the sysctl adapter): the next
    packet goes to backend2."""
    stale = make_stale(node, ipvs)
    assert stale.client.ask(QUIET) is None
    sysctls = ProcSysctl()
    sysctls.write("net.ipv4.vs.expire_nodest_conn", 1)
    assert sysctls.read("net.ipv4.vs.expire_nodest_conn") == 1
    assert stale.client.ask() == "backend2"
    # The packet expired the entry (expires=0); the kernel's timer removes it moments later, as in
    # rows B and C: wait for it like they do, rather than sample the table once.
    assert wait_until(lambda: not stale.conns_to(stale.dead), timeout=5) is not None, stale.conns_to(
        stale.dead
    )
    assert_live_untouched(stale)


@VERSIONS
def test_row_D3_readd_weight0_and_delete_flushes_proactively(
    node: Lab, ipvs: NetlinkIPVS, version: int
) -> None:
    """Row D3 / F1 repair: with expire_nodest_conn=1, ``flush_dead_real_server`` (re-add the removed RS
    with weight 0, delete it) flushes the stale entry with no packet sent; then backend2 answers."""
    stale = make_stale(node, ipvs, version)
    assert stale.client.ask(QUIET) is None
    assert stale.conns_to(stale.dead)
    sysctl_write("net.ipv4.vs.expire_nodest_conn", 1)
    ipvs.flush_dead_real_server(stale.svc, stale.dead)
    took = wait_until(lambda: not stale.conns_to(stale.dead), timeout=5)
    assert took is not None, "D3 did not flush the stale entry"
    report(f"row D3 ipv{version}: seconds until the stale entry was gone (no packet)", round(took, 3))
    assert {rs.endpoint for vs in ipvs.list_services() for rs in vs.real_servers} == {stale.live}
    assert stale.client.ask() == "backend2"
    assert_live_untouched(stale)


def recreate_service(stale: Stale) -> None:
    addr = str(stale.svc).rsplit("/", 1)[0]
    run("ipvsadm", "-D", "-u", addr)
    ipvsadm_add(stale.svc, stale.live.ip)


def test_row_D4_recreate_service_without_expire_nodest_conn_does_not_help(
    node: Lab, ipvs: NetlinkIPVS
) -> None:
    """Row D4: delete and re-create the virtual service, expire_nodest_conn=0: still times out."""
    stale = make_stale(node, ipvs)
    recreate_service(stale)
    for _ in range(2):
        assert stale.client.ask(QUIET) is None
    assert stale.conns_to(stale.dead)


def test_row_D5_deleting_conntrack_entries_leaves_ipvs_entry(
    node: Lab, ipvs: NetlinkIPVS, conntrack: NetlinkConntrack
) -> None:
    """Row D5: with net.ipv4.vs.conntrack=1 (as kube-proxy sets it), deleting the flow's nf_conntrack
    entries does not touch the IPVS entry: the client still times out."""
    need_tool("nft")
    sysctl_write("net.ipv4.vs.conntrack", 1)
    # Conntrack hooks are registered per namespace only once a rule needs them (kube-proxy's
    # iptables rules always do); a ``ct state`` rule does the same here.
    run("nft", "add table inet pmkct")
    run("nft", "add chain inet pmkct pre { type filter hook prerouting priority -150 ; }")
    run("nft", "add rule inet pmkct pre ct state new counter")
    try:
        stale = make_stale(node, ipvs)
        deleted = conntrack.delete_udp_entries(VIP4, 53, B1.ip4)
        assert deleted >= 1, run("conntrack", "-L", check=False)
        assert stale.conns_to(stale.dead)
        assert stale.client.ask(QUIET) is None
        assert stale.conns_to(stale.dead)
    finally:
        run("nft", "delete", "table", "inet", "pmkct", check=False)


def test_row_D6_recreate_service_with_expire_nodest_conn_works(node: Lab, ipvs: NetlinkIPVS) -> None:
    """Row D6: delete and re-create the virtual service with expire_nodest_conn=1: works (D2/D3 do too,
    without dropping the Service)."""
    stale = make_stale(node, ipvs)
    sysctl_write("net.ipv4.vs.expire_nodest_conn", 1)
    recreate_service(stale)
    assert stale.client.ask() == "backend2"
