"""NetlinkConntrack against real nf_conntrack; ``conntrack -L/-C`` as the independent oracle.

F5 is reproduced in an iptables-style DNAT setup (nftables DNAT in the node
namespace, the way kube-proxy's iptables/nftables modes translate a Service): the Service's
rule moves to backend2, backend1 dies, and the client's existing conntrack entry keeps
sending it to backend1 until the adapter deletes exactly that entry.
"""

from __future__ import annotations

import pytest

from proxymedic.dataplane.conntrack import NetlinkConntrack
from proxymedic.dataplane.types import ConntrackStats
from tests.kernel.lab import BACKENDS, VIP4, VIP6, Lab, need_tool, run, sysctl_read

B1, B2 = BACKENDS
VERSIONS = pytest.mark.parametrize("version", [4, 6], ids=["ipv4", "ipv6"])


def dnat(version: int, target: str) -> None:
    """(Re)point the Service's DNAT rule at ``target`` like a proxy sync would."""
    fam, tbl = ("ip6", "pmk6") if version == 6 else ("ip", "pmk4")
    vip = VIP6 if version == 6 else VIP4
    run("nft", f"add table {fam} {tbl}")
    run("nft", f"add chain {fam} {tbl} pre {{ type nat hook prerouting priority -100 ; }}")
    run("nft", f"flush chain {fam} {tbl} pre")
    run("nft", f"add rule {fam} {tbl} pre {fam} daddr {vip} udp dport 53 dnat to {target}")


def oracle_udp_entries(version: int) -> set[tuple[str, str, str, str]]:
    """(orig src port, orig dst, orig dport, reply src) from ``conntrack -L``."""
    fam = "ipv6" if version == 6 else "ipv4"
    out = set()
    proc = run("conntrack", "-L", "-f", fam, "-p", "udp", check=False)
    for line in proc.splitlines():
        kv: dict[str, list[str]] = {}
        for tok in line.split():
            if "=" in tok:
                k, v = tok.split("=", 1)
                kv.setdefault(k, []).append(v)
        if len(kv.get("src", [])) == 2:
            out.add((kv["sport"][0], kv["dst"][0], kv["dport"][0], kv["src"][1]))
    return out


def test_stats_match_proc_and_conntrack_cli(node: Lab, conntrack: NetlinkConntrack) -> None:
    """F6 sensing: count and max through ctnetlink equal /proc/sys and ``conntrack -C``."""
    need_tool("conntrack")
    run(
        "conntrack",
        "-I",
        "-p",
        "udp",
        "-s",
        "10.0.0.2",
        "-d",
        "10.96.0.99",
        "--sport",
        "999",
        "--dport",
        "53",
        "-r",
        "10.0.1.2",
        "-q",
        "10.0.0.2",
        "--reply-port-src",
        "53",
        "--reply-port-dst",
        "999",
        "-t",
        "60",
    )
    stats = conntrack.stats()
    assert isinstance(stats, ConntrackStats)
    assert stats.count >= 1
    assert stats.count == sysctl_read("net.netfilter.nf_conntrack_count") == int(run("conntrack", "-C"))
    assert stats.max == sysctl_read("net.netfilter.nf_conntrack_max")
    assert stats.drops is not None
    assert stats.early_drops is not None


@VERSIONS
def test_F5_stale_dnat_entry_deleted_exactly(node: Lab, conntrack: NetlinkConntrack, version: int) -> None:
    """F5: UDP to a Service fails though the rules are right (the entry DNATs to the dead pod);
    the adapter deletes exactly the entries VIP:53 -> backend1 and the client reaches backend2.
    Entries of the live backend, of another VIP and of another port stay."""
    need_tool("nft")
    need_tool("conntrack")
    v6 = version == 6
    vip, b1, b2 = (VIP6, B1.ip6, B2.ip6) if v6 else (VIP4, B1.ip4, B2.ip4)
    cli = "fd00::2" if v6 else "10.0.0.2"
    other_vip = "fd00:96::11" if v6 else "10.96.0.11"
    b1_ep = f"[{b1}]:53" if v6 else f"{b1}:53"
    b2_ep = f"[{b2}]:53" if v6 else f"{b2}:53"
    try:
        dnat(version, b1_ep)
        client = node.client(version)
        assert client.ask() == "backend1"
        dnat(version, b2_ep)  # the proxy moved the Service to backend2 ...
        live = node.client(version)
        assert live.ask() == "backend2"
        for dport, dst in ((53, other_vip), (5353, str(vip))):  # decoys that must survive
            run(
                "conntrack",
                "-I",
                "-p",
                "udp",
                "-s",
                cli,
                "-d",
                dst,
                "--sport",
                "4001",
                "--dport",
                str(dport),
                "-r",
                str(b1),
                "-q",
                cli,
                "--reply-port-src",
                str(dport),
                "--reply-port-dst",
                "4001",
                "-t",
                "120",
            )
        node.kill_backend(B1)  # ... and the old pod is gone
        assert client.ask(0.5) is None, "the existing entry still DNATs to the dead backend"

        listed = conntrack.list_udp_entries(vip, 53, b1)
        assert [(e.orig_sport, e.reply_src) for e in listed] == [(client.port, b1)]
        before = oracle_udp_entries(version)
        assert conntrack.delete_udp_entries(vip, 53, b1) == 1
        after = oracle_udp_entries(version)
        assert before - after == {(str(client.port), str(vip), "53", str(b1))}
        assert conntrack.delete_udp_entries(vip, 53, b1) == 0

        assert client.ask() == "backend2"
        assert (str(live.port), str(vip), "53", str(b2)) in after
        assert ("4001", other_vip, "53", str(b1)) in after
        assert ("4001", str(vip), "5353", str(b1)) in after
    finally:
        run("nft", "delete", "table", "ip6" if v6 else "ip", "pmk6" if v6 else "pmk4", check=False)
        run("conntrack", "-F", check=False)
        run("conntrack", "-F", "-f", "ipv6", check=False)


def test_delete_rejects_mixed_families(node: Lab, conntrack: NetlinkConntrack) -> None:
    with pytest.raises(ValueError, match="families"):
        conntrack.delete_udp_entries(VIP4, 53, B1.ip6)
