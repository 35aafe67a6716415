"""NetlinkIPVS against real IPVS: every pyroute2 verb it uses, pinned; ipvsadm as the oracle."""

from __future__ import annotations

import ipaddress

import pytest

from proxymedic.dataplane.ipvs import NetlinkIPVS
from proxymedic.dataplane.types import (
    DataplaneUnavailableError,
    Endpoint,
    IPVSTimeouts,
    L4Protocol,
    ServiceKey,
)
from tests.kernel.lab import BACKENDS, VIP4, VIP6, Lab, run

B1, B2 = BACKENDS
SVC4 = ServiceKey(L4Protocol.UDP, VIP4, 53)
SVC6 = ServiceKey(L4Protocol.UDP, VIP6, 53)
TCP4 = ServiceKey(L4Protocol.TCP, VIP4, 80)


def ipvsadm_add(
    svc: ServiceKey,
    *backends: ipaddress.IPv4Address | ipaddress.IPv6Address,
    sched: str = "rr",
    weight: int = 1,
) -> None:
    flag = {L4Protocol.UDP: "-u", L4Protocol.TCP: "-t", L4Protocol.SCTP: "--sctp-service"}[svc.protocol]
    run("ipvsadm", "-A", flag, str(svc).rsplit("/", 1)[0], "-s", sched)
    for ip in backends:
        ep = Endpoint(ip, svc.port)
        run("ipvsadm", "-a", flag, str(svc).rsplit("/", 1)[0], "-r", str(ep), "-m", "-w", str(weight))


def oracle_real_servers() -> set[tuple[str, str, int]]:
    """(service, real server, weight) from ``ipvsadm -Ln``, normalised like ServiceKey/Endpoint."""
    out: set[tuple[str, str, int]] = set()
    svc = ""
    for line in run("ipvsadm", "-Ln").splitlines():
        f = line.split()
        if f and f[0] in ("UDP", "TCP", "SCTP"):
            svc = f"{f[1]}/{f[0]}"
        elif f and f[0] == "->" and f[1] != "RemoteAddress:Port":
            out.add((svc, f[1], int(f[3])))
    return out


def adapter_real_servers(ipvs: NetlinkIPVS) -> set[tuple[str, str, int]]:
    return {
        (str(vs.key), str(rs.endpoint), rs.weight) for vs in ipvs.list_services() for rs in vs.real_servers
    }


def test_list_services_ipv4_and_ipv6_matches_ipvsadm(node: Lab, ipvs: NetlinkIPVS) -> None:
    """Listing (IPVS_CMD_GET_SERVICE/GET_DEST dumps) for v4 and v6 equals ``ipvsadm -Ln``."""
    ipvsadm_add(SVC4, B1.ip4, B2.ip4)
    ipvsadm_add(SVC6, B1.ip6, B2.ip6, sched="wlc")
    ipvsadm_add(TCP4, B1.ip4, weight=3)
    services = ipvs.list_services()
    assert [vs.key for vs in services] == [TCP4, SVC4, SVC6]  # IPv4 first, then protocol, address, port
    by_key = {vs.key: vs for vs in services}
    assert by_key[SVC6].scheduler == "wlc"
    assert {rs.endpoint for rs in by_key[SVC6].real_servers} == {Endpoint(B1.ip6, 53), Endpoint(B2.ip6, 53)}
    assert adapter_real_servers(ipvs) == oracle_real_servers()
    assert len(oracle_real_servers()) == 5


def test_list_services_empty_table(node: Lab, ipvs: NetlinkIPVS) -> None:
    assert ipvs.list_services() == []


def test_get_services_looks_up_only_the_keys_asked_for(node: Lab, ipvs: NetlinkIPVS) -> None:
    """IPVS_CMD_GET_SERVICE per key (v4 and v6) equals the dump's entries; absent keys are left out,
    and the adapter's one socket serves every call, a change between them included."""
    ipvsadm_add(SVC4, B1.ip4, B2.ip4)
    ipvsadm_add(SVC6, B1.ip6, sched="wlc")
    ipvsadm_add(TCP4, B1.ip4, weight=3)
    absent = ServiceKey(L4Protocol.UDP, VIP4, 5353)
    whole = {vs.key: vs for vs in ipvs.list_services()}
    assert ipvs.get_services([SVC6, absent, SVC4]) == [whole[SVC4], whole[SVC6]]
    assert ipvs.get_services([absent]) == []
    ipvs.remove_real_server(SVC4, Endpoint(B2.ip4, 53))
    [svc4] = ipvs.get_services([SVC4])
    assert {rs.endpoint for rs in svc4.real_servers} == {Endpoint(B1.ip4, 53)}
    assert ipvs.sockets_opened == 1


@pytest.mark.parametrize("svc", [SVC4, SVC6], ids=["ipv4", "ipv6"])
def test_remove_real_server_verb_del(node: Lab, ipvs: NetlinkIPVS, svc: ServiceKey) -> None:
    """F2: ``dest('del')`` removes exactly one real server; absent is False, not an error."""
    v6 = svc.vip.version == 6
    ipvsadm_add(svc, *((B1.ip6, B2.ip6) if v6 else (B1.ip4, B2.ip4)))
    dead = Endpoint(B1.ip6 if v6 else B1.ip4, 53)
    assert ipvs.remove_real_server(svc, dead) is True
    assert {rs for (_, rs, _) in oracle_real_servers()} == {str(Endpoint(B2.ip6 if v6 else B2.ip4, 53))}
    assert ipvs.remove_real_server(svc, dead) is False
    missing_service = ServiceKey(L4Protocol.UDP, svc.vip, 5353)
    assert ipvs.remove_real_server(missing_service, dead) is False


@pytest.mark.parametrize("svc", [SVC4, SVC6], ids=["ipv4", "ipv6"])
def test_flush_dead_real_server_verbs_add_set_del(node: Lab, ipvs: NetlinkIPVS, svc: ServiceKey) -> None:
    """D3 mechanics: absent RS is re-added (``add``, weight 0) and deleted; present RS with weight > 0
    is first set to weight 0 (``set``, never pyroute2's delete-mapped ``update``) and deleted."""
    v6 = svc.vip.version == 6
    b1, b2 = (B1.ip6, B2.ip6) if v6 else (B1.ip4, B2.ip4)
    ipvsadm_add(svc, b1, b2)
    ipvs.flush_dead_real_server(svc, Endpoint(b1, 53))  # present, weight 1
    assert {rs for (_, rs, _) in oracle_real_servers()} == {str(Endpoint(b2, 53))}
    ipvs.flush_dead_real_server(svc, Endpoint(b1, 53))  # absent
    assert {rs for (_, rs, _) in oracle_real_servers()} == {str(Endpoint(b2, 53))}
    with pytest.raises(DataplaneUnavailableError):
        ipvs.flush_dead_real_server(ServiceKey(L4Protocol.UDP, svc.vip, 5353), Endpoint(b1, 53))


def test_set_weight_verb_set_changes_in_place(node: Lab, ipvs: NetlinkIPVS) -> None:
    """Pin the ``set`` verb (IPVS_CMD_SET_DEST): the weight changes and the real server stays.
    (pyroute2's ``update`` verb would send IPVS_CMD_DEL_DEST; the adapter never uses it.)"""
    ipvsadm_add(SVC4, B1.ip4, B2.ip4)
    ipvs.set_weight(SVC4, Endpoint(B1.ip4, 53), 7)
    assert oracle_real_servers() == {(str(SVC4), f"{B1.ip4}:53", 7), (str(SVC4), f"{B2.ip4}:53", 1)}
    ipvs.set_weight(SVC4, Endpoint(B1.ip4, 53), 0)
    assert (str(SVC4), f"{B1.ip4}:53", 0) in oracle_real_servers()


def test_timeouts_get_set_roundtrip_against_ipvsadm(node: Lab, ipvs: NetlinkIPVS) -> None:
    """IPVS_CMD_GET_CONFIG reads 900/120/300 on a fresh node; SET_CONFIG with 0 leaves a value alone."""
    assert ipvs.get_timeouts() == IPVSTimeouts(tcp=900, tcp_fin=120, udp=300)
    ipvs.set_timeouts(IPVSTimeouts(tcp=0, tcp_fin=0, udp=5))
    assert ipvs.get_timeouts() == IPVSTimeouts(tcp=900, tcp_fin=120, udp=5)
    assert run("ipvsadm", "-Ln", "--timeout").split(":")[1].split() == ["900", "120", "5"]
    ipvs.set_timeouts(IPVSTimeouts(tcp=800, tcp_fin=100, udp=300))
    assert run("ipvsadm", "-Ln", "--timeout").split(":")[1].split() == ["800", "100", "300"]
