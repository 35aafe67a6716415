"""``parse_ipvsadm`` reads both ipvsadm formats into the shape ``proxymedic expect`` prints."""

from __future__ import annotations

import pytest

from proxymedic.expectation import IpvsadmParseError, NodeExpectation, expect_from_objects, parse_ipvsadm
from tests.expectation.cases import CASES
from tests.expectation.manifests import NODE_NAMES, NODES

pytestmark = pytest.mark.unit

LIST = """\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  172.18.0.3:30080 rr
  -> 10.244.3.111:8080            Masq    1      0          0
  -> 10.244.1.111:8080            Masq    1      0          0
TCP  10.96.10.12:80 rr persistent 10800
  -> 10.244.1.121:8080            Masq    1      2          0
  -> 10.244.9.9:8080              Masq    0      1          3
UDP  10.96.10.6:53 rr
TCP  [fd00:10:96::7]:80 rr
  -> [FD00:10:244:1::71]:8080     Masq    1      0          0
FWM  100 rr
  -> 10.0.0.1:0                   Masq    1      0          0
"""

SAVE = """\
-A -t 172.18.0.3:30080 -s rr
-a -t 172.18.0.3:30080 -r 10.244.3.111:8080 -m -w 1
-a -t 172.18.0.3:30080 -r 10.244.1.111:8080 -m -w 1
-A -t 10.96.10.12:80 -s rr -p 10800
-a -t 10.96.10.12:80 -r 10.244.1.121:8080 -m -w 1
-a -t 10.96.10.12:80 -r 10.244.9.9:8080 -m -w 0
-A -u 10.96.10.6:53 -s rr
-A -t [fd00:10:96::7]:80 -s rr
-a -t [fd00:10:96::7]:80 -r [fd00:10:244:1::71]:8080 -m -w 1
-A -f 100 -s rr
-a -f 100 -r 10.0.0.1:0 -m -w 1
"""

EXPECTED = {
    "node": "kind-worker",
    "mode": "ipvs",
    "virtualServers": [
        {
            "address": "10.96.10.6",
            "port": 53,
            "protocol": "UDP",
            "realServers": [],
        },
        {
            "address": "10.96.10.12",
            "port": 80,
            "protocol": "TCP",
            "realServers": [{"address": "10.244.1.121", "port": 8080}],
        },
        {
            "address": "172.18.0.3",
            "port": 30080,
            "protocol": "TCP",
            "realServers": [
                {"address": "10.244.1.111", "port": 8080},
                {"address": "10.244.3.111", "port": 8080},
            ],
        },
        {
            "address": "fd00:10:96::7",
            "port": 80,
            "protocol": "TCP",
            "realServers": [{"address": "fd00:10:244:1::71", "port": 8080}],
        },
    ],
}


@pytest.mark.parametrize("text", [LIST, SAVE], ids=["list", "save"])
def test_both_formats_give_the_expect_shape_without_draining_real_servers(text: str) -> None:
    assert parse_ipvsadm(text, "kind-worker").as_json() == EXPECTED


@pytest.mark.parametrize("text", [LIST, SAVE], ids=["list", "save"])
def test_draining_real_servers_are_kept_on_request(text: str) -> None:
    parsed = parse_ipvsadm(text, "kind-worker", keep_draining=True)
    vip = next(vs for vs in parsed.virtual_servers if vs.address == "10.96.10.12")
    assert [rs.address for rs in vip.real_servers] == ["10.244.1.121", "10.244.9.9"]


def test_sctp_and_long_options_in_save_format() -> None:
    text = (
        "-A --sctp-service 10.96.0.30:3868 -s rr\n"
        "-a --sctp-service 10.96.0.30:3868 --real-server 10.244.1.3:3868 -m --weight 1\n"
    )
    parsed = parse_ipvsadm(text).as_json()
    assert parsed["virtualServers"] == [
        {
            "address": "10.96.0.30",
            "port": 3868,
            "protocol": "SCTP",
            "realServers": [{"address": "10.244.1.3", "port": 3868}],
        }
    ]


def test_empty_output_is_no_virtual_servers() -> None:
    assert parse_ipvsadm("", "n").virtual_servers == ()


@pytest.mark.parametrize(
    "text", ["TCP  10.96.0.1 rr\n", "-A -t 10.96.0.1:443\n-a -t 10.96.0.1:443 -m\n", "bogus line\n"]
)
def test_malformed_output_is_an_error(text: str) -> None:
    with pytest.raises(IpvsadmParseError):
        parse_ipvsadm(text)


def as_ipvsadm_list(expectation: NodeExpectation) -> str:
    """What ``ipvsadm -Ln`` prints for exactly these virtual servers (kernel order is a hash order)."""

    def endpoint(address: str, port: int) -> str:
        return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"

    lines = ["IP Virtual Server version 1.2.1 (size=4096)", "Prot LocalAddress:Port Scheduler Flags"]
    lines.append("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn")
    for vs in reversed(expectation.virtual_servers):
        lines.append(f"{vs.protocol:<5}{endpoint(vs.address, vs.port)} rr")
        lines += [
            f"  -> {endpoint(rs.address, rs.port):<28} Masq    1      0          0" for rs in vs.real_servers
        ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("node", NODE_NAMES)
def test_a_differential_run_is_one_comparison(node: str) -> None:
    """The shape of the later test against a real kube-proxy: apply, read ipvsadm, compare."""
    manifests = [manifest for case in CASES for manifest in case.manifests]
    expected = expect_from_objects([*manifests, *NODES], node)
    kernel = as_ipvsadm_list(expected)  # stands in for the node's `ipvsadm -Ln`
    assert parse_ipvsadm(kernel, node) == expected
