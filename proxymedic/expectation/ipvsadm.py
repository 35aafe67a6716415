"""``ipvsadm -Ln`` and ``ipvsadm -S -n`` output read into the shape of ``NodeExpectation``.

So what the kernel holds compares with what kube-proxy should have programmed in one
equality: ``parse_ipvsadm(text, node) == expect_node(...)``. Real servers at weight 0 are left
out by default: kube-proxy programs weight 1 and leaves weight 0 only on TCP real servers it
removed while their connections drain. Firewall-mark services are not kube-proxy's and are
skipped.
"""

from __future__ import annotations

import re
import shlex

from proxymedic.expectation.ipvs import NodeExpectation, RealServer, VirtualServer
from proxymedic.expectation.model import canonical_ip

_PROTOCOLS = {
    "TCP": "TCP",
    "UDP": "UDP",
    "SCTP": "SCTP",
    "-t": "TCP",
    "--tcp-service": "TCP",
    "-u": "UDP",
    "--udp-service": "UDP",
    "--sctp-service": "SCTP",
}
_ENDPOINT = re.compile(r"^\[?(?P<address>[0-9A-Fa-f.:]+?)\]?:(?P<port>\d+)$")


class IpvsadmParseError(ValueError):
    pass


def _endpoint(text: str) -> tuple[str, int]:
    match = _ENDPOINT.match(text)
    address = canonical_ip(match.group("address")) if match else None
    if match is None or address is None:
        raise IpvsadmParseError(f"not an address:port: {text!r}")
    return address, int(match.group("port"))


class _Table:
    def __init__(self) -> None:
        self.servers: dict[tuple[str, int, str], list[RealServer]] = {}

    def service(self, protocol: str, endpoint: str) -> tuple[str, int, str]:
        address, port = _endpoint(endpoint)
        key = (address, port, protocol)
        self.servers.setdefault(key, [])
        return key

    def real_server(self, key: tuple[str, int, str], endpoint: str, weight: int, keep_draining: bool) -> None:
        if weight > 0 or keep_draining:
            self.servers.setdefault(key, []).append(RealServer(*_endpoint(endpoint)))

    def result(self, node: str) -> NodeExpectation:
        servers = [
            VirtualServer(address, port, protocol, tuple(sorted(set(rss), key=RealServer.sort_key)))
            for (address, port, protocol), rss in self.servers.items()
        ]
        return NodeExpectation(node, tuple(sorted(servers, key=VirtualServer.sort_key)))


def _parse_list(lines: list[str], table: _Table, keep_draining: bool) -> None:
    current: tuple[str, int, str] | None = None
    for line in lines:
        fields = line.split()
        if not fields or fields[0] in ("IP", "Prot") or fields[:2] == ["->", "RemoteAddress:Port"]:
            continue
        if fields[0] == "->":
            if current is not None:  # the real servers of a skipped (firewall-mark) service
                weight = int(fields[3]) if len(fields) > 3 else 1
                table.real_server(current, fields[1], weight, keep_draining)
        elif fields[0] in _PROTOCOLS:
            current = table.service(_PROTOCOLS[fields[0]], fields[1])
        elif fields[0] == "FWM":
            current = None
        else:
            raise IpvsadmParseError(f"unexpected line: {line!r}")


def _option(words: list[str], *names: str) -> str | None:
    """The value after an option; flags such as ``-m`` take none, so pairs cannot be zipped."""
    for index, word in enumerate(words[:-1]):
        if word in names:
            return words[index + 1]
    return None


def _parse_save(lines: list[str], table: _Table, keep_draining: bool) -> None:
    for line in lines:
        words = shlex.split(line)
        if not words:
            continue
        if words[0] not in ("-A", "-a") or len(words) < 3:
            raise IpvsadmParseError(f"unexpected line: {line!r}")
        if words[1] not in _PROTOCOLS:
            continue  # -f: a firewall-mark service
        key = table.service(_PROTOCOLS[words[1]], words[2])
        if words[0] == "-a":
            target = _option(words, "-r", "--real-server")
            if target is None:
                raise IpvsadmParseError(f"a real server without -r: {line!r}")
            weight = int(_option(words, "-w", "--weight") or 1)
            table.real_server(key, target, weight, keep_draining)


def parse_ipvsadm(text: str, node: str = "", *, keep_draining: bool = False) -> NodeExpectation:
    """Either format, detected from the first line that says something."""
    lines = [line for line in text.splitlines() if line.strip()]
    table = _Table()
    if lines and lines[0].lstrip().startswith(("-A", "-a")):
        _parse_save(lines, table, keep_draining)
    else:
        _parse_list(lines, table, keep_draining)
    return table.result(node)
