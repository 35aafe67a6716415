"""The node's network, in the VM's root network namespace (the node ``node-1``).

```
  pm-clients (10.244.0.2)                pm-pod-N (10.244.1.N)   one per CoreDNS pod
        │ veth                                 │ veth
  ┌─────┴──────── node-1: the VM's root namespace ─────┴──────────┐
  │ kube-proxy (IPVS): kube-ipvs0 holds 10.96.0.10; IPVS NAT to   │
  │ the pods; a /32 route per pod; 169.254.1.1 on every node veth │
  └───────────────────────────────────────────────────────────────┘
```

Pods and clients route everything through 169.254.1.1, the node's side of their veth, as
Calico's pods do. A pod is a real UDP server process in its own namespace (``dns_server.py``);
the clients are real sockets with fixed source ports in theirs (``dns_clients.py``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GATEWAY = "169.254.1.1"
CLIENTS_NS, CLIENT_IP = "pm-clients", "10.244.0.2"
VIP = "10.96.0.10"
NODE_IP = "10.0.2.15"
"""eth0 on QEMU's user network (scripts/vm/guest.sh), where the host is 10.0.2.2."""


def run(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def ip_batch(lines: list[str], ns: str | None = None) -> None:
    argv = ["ip", *(["-n", ns] if ns else []), "-batch", "-"]
    proc = subprocess.run(argv, input="\n".join(lines) + "\n", capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")


def sysctl(name: str, value: int | None = None) -> int:
    """Read (and first write, when ``value`` is given) a sysctl of the node."""
    path = Path("/proc/sys") / name.replace(".", "/")
    if value is not None:
        path.write_text(f"{value}\n")
    return int(path.read_text())


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.2) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def attach(ns: str, link: str, ip: str, node_ns: str | None = None, gateway: str = GATEWAY) -> None:
    """A namespace with one veth to the node, ``ip``/32 on its side, routed from the node. The node
    is this namespace, or ``node_ns`` when the node is a network namespace of its own."""
    run("ip", "netns", "add", ns)
    ip_batch(
        [
            f"link add {link} type veth peer name eth0 netns {ns}",
            f"addr add {gateway}/32 dev {link}",
            f"link set {link} up",
            f"route add {ip}/32 dev {link}",
        ],
        node_ns,
    )
    ip_batch(
        [
            "link set lo up",
            f"addr add {ip}/32 dev eth0",
            "link set eth0 up",
            f"route add {gateway} dev eth0 scope link",
            f"route add default via {gateway} dev eth0",
        ],
        ns,
    )


HOST_GATEWAY = "169.254.2.1"
"""This machine's side of the veth of a node that is a network namespace (``prepare_node(node_ns)``):
where that node reaches the API server's relay."""


def prepare_node(node_ns: str | None = None) -> None:
    """The node's network and the clients' namespace. ``node_ns``: the node is a network namespace
    of this machine (kube-proxy's rule modes need no VM), reached from here through a veth."""
    if node_ns is None:
        sysctl("net.ipv4.ip_forward", 1)
        run("ip", "link", "set", "lo", "up")
    else:
        attach(node_ns, "pmv-node", NODE_IP, gateway=HOST_GATEWAY)
        run("ip", "netns", "exec", node_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    attach(CLIENTS_NS, "pmv-clients", CLIENT_IP, node_ns)


@dataclass
class Pod:
    """A CoreDNS pod: a namespace, an IP and a DNS server process."""

    name: str
    ip: str
    proc: subprocess.Popen[bytes] | None = None
    node_ns: str | None = None
    """The node's network namespace; None: this one."""

    @property
    def ns(self) -> str:
        return f"pm-{self.name}"

    def start(self, lameduck: float) -> None:
        attach(self.ns, f"pmv-{self.ip.split('.')[-1]}", self.ip, self.node_ns)
        self.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.ns,
                sys.executable,
                "-I",
                str(HERE / "dns_server.py"),
                "--name",
                self.name,
                "--ip",
                self.ip,
                "--lameduck",
                str(lameduck),
            ],
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            raise AssertionError(f"pod {self.name} did not start its DNS server: {line!r}")

    def terminate(self) -> None:
        """SIGTERM: the server answers through its lameduck, then exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float) -> None:
        if self.proc is not None:
            self.proc.wait(timeout)

    def kill(self) -> None:
        """The pod is gone: its process killed and its namespace (so its veth and route) removed."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        run("ip", "netns", "del", self.ns, check=False)


@dataclass
class Clients:
    """The resolver processes' view: start, the live status, and every query once stopped."""

    ports: list[int]
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    rows: dict[int, list[list[Any]]] = field(default_factory=dict)

    @property
    def status_file(self) -> Path:
        return self.workdir / f"clients-{self.ports[0]}.status.json"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                CLIENTS_NS,
                sys.executable,
                "-I",
                str(HERE / "dns_clients.py"),
                "--source",
                CLIENT_IP,
                "--ports",
                ",".join(map(str, self.ports)),
                "--vip",
                VIP,
                "--status",
                str(self.status_file),
                "--out",
                str(self.workdir / f"clients-{self.ports[0]}.json"),
            ],
        )

    def status(self) -> dict[int, dict[str, Any]]:
        try:
            return {int(k): v for k, v in json.loads(self.status_file.read_text()).items()}
        except (OSError, ValueError):
            return {}

    def stop(self) -> dict[int, list[list[Any]]]:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        out = self.workdir / f"clients-{self.ports[0]}.json"
        self.rows = {int(k): v for k, v in json.loads(out.read_text()).items()}
        for path in (out, self.status_file):
            path.unlink(missing_ok=True)
        return self.rows


def _hex_ip(text: str) -> str:
    return str(ipaddress.IPv4Address(int(text, 16)))


def real_servers(vip: str = VIP, port: int = 53, proto: str = "UDP") -> dict[str, int]:
    """Real server IP → weight of the virtual service, read from /proc/net/ip_vs (not the adapters)."""
    servers: dict[str, int] = {}
    current = False
    for line in Path("/proc/net/ip_vs").read_text().splitlines()[3:]:
        fields = line.split()
        if not fields:
            continue
        if fields[0] != "->":
            addr, _, hexport = fields[1].partition(":")
            current = fields[0] == proto and _hex_ip(addr) == vip and int(hexport, 16) == port
        elif current:
            addr, _, _ = fields[1].partition(":")
            servers[_hex_ip(addr)] = int(fields[3])
    return servers


def cleanup_namespaces(prefix: str = "pm-") -> None:
    for ns in run("ip", "netns", "list", check=False).split():
        if ns.startswith(prefix):
            run("ip", "netns", "del", ns, check=False)
    os.sync()
