"""The measured kernel table (docs/kernel.md) as scenario scripts that run unchanged on the
modelled dataplane and on a real kernel.

A scenario drives a ``Node`` (a driver) and returns what a client and an operator can see:
which backend answered each query, how many IPVS entries point at a backend, whether an entry
has a long or a short life left. The model and the kernel must return the same lists; the
kernel side runs in the VM tier (``tests/kernel/test_differential.py``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Protocol

from proxymedic.dataplane.types import Endpoint, IPVSTimeouts, L4Protocol, ServiceKey
from proxymedic.sim.kernel import ModelConfig, ModelledNode, Outcome

VIP = ipaddress.IPv4Address("10.96.0.10")
BACKEND_IPS = {"backend1": ipaddress.IPv4Address("10.0.1.2"), "backend2": ipaddress.IPv4Address("10.0.2.2")}
CLIENT_IP = ipaddress.IPv4Address("10.0.0.2")
SERVICE = ServiceKey(L4Protocol.UDP, VIP, 53)
LOST = "lost"
EXPIRE_NODEST = "net.ipv4.vs.expire_nodest_conn"
VS_CONNTRACK = "net.ipv4.vs.conntrack"


class Node(Protocol):
    def set_sysctl(self, name: str, value: int) -> None: ...
    def create_service(self, *backends: str) -> None: ...
    def delete_service(self) -> None: ...
    def add_real_server(self, backend: str) -> None: ...
    def remove_real_server(self, backend: str) -> None:
        """Through the adapter, as kube-proxy or the agent does."""
        ...

    def flush_dead_real_server(self, backend: str) -> None: ...
    def set_udp_timeout(self, seconds: int) -> None: ...
    def delete_conntrack(self, backend: str) -> int: ...
    def kill(self, backend: str) -> None: ...
    def ask(self, client: str) -> str:
        """One query from the client's fixed source port: the backend that answered, or "lost"."""
        ...

    def entries_to(self, backend: str) -> int: ...
    def seconds_left(self, client: str) -> float: ...
    def settle(self) -> None:
        """Let the kernel run the work it queued (0.2 s)."""
        ...


def _life(seconds: float) -> str:
    return "long" if seconds > 250 else "short" if seconds <= 5 else f"{seconds:.0f}s"


def _stale(node: Node, out: list[str], expire_nodest: int = 0) -> None:
    """c1's flow is on backend1; backend1 dies and its real server is removed, as kube-proxy does."""
    node.set_sysctl(EXPIRE_NODEST, expire_nodest)
    node.create_service("backend1")
    out.append(node.ask("c1"))
    node.add_real_server("backend2")
    node.kill("backend1")
    node.remove_real_server("backend1")
    node.settle()


def row_a(node: Node) -> list[str]:
    out: list[str] = []
    _stale(node, out)
    out += [node.ask("c1") for _ in range(3)]
    out.append(_life(node.seconds_left("c1")))
    out.append(node.ask("c2"))
    return out


def row_b(node: Node) -> list[str]:
    out: list[str] = []
    _stale(node, out, expire_nodest=1)
    out.append(f"entries={node.entries_to('backend1')}")
    out.append(node.ask("c1"))
    return out


def row_c(node: Node) -> list[str]:
    out: list[str] = []
    node.set_sysctl(EXPIRE_NODEST, 1)
    node.create_service("backend1")
    out.append(node.ask("c1"))
    node.add_real_server("backend2")
    node.kill("backend1")  # kube-proxy is stalled: the real server stays
    out.append(node.ask("c1"))
    node.remove_real_server("backend1")
    node.settle()
    out.append(f"entries={node.entries_to('backend1')}")
    out.append(node.ask("c1"))
    return out


def row_d1(node: Node) -> list[str]:
    out: list[str] = []
    _stale(node, out)
    node.set_udp_timeout(5)
    out.append(node.ask("c1"))
    out.append(_life(node.seconds_left("c1")))
    out.append(node.ask("c2"))
    out.append(_life(node.seconds_left("c2")))
    return out


def row_d2(node: Node) -> list[str]:
    out: list[str] = []
    _stale(node, out)
    out.append(node.ask("c1"))
    node.set_sysctl(EXPIRE_NODEST, 1)
    out.append(node.ask("c1"))
    return out


def row_d3(node: Node) -> list[str]:
    out: list[str] = []
    _stale(node, out)
    node.set_sysctl(EXPIRE_NODEST, 1)
    node.flush_dead_real_server("backend1")
    node.settle()
    out.append(f"entries={node.entries_to('backend1')}")  # flushed before any packet
    out.append(node.ask("c1"))
    return out


def row_d4(node: Node) -> list[str]:
    out: list[str] = []
    _stale(node, out)
    node.delete_service()
    node.create_service("backend2")
    out.append(node.ask("c1"))
    return out


def row_d5(node: Node) -> list[str]:
    out: list[str] = []
    node.set_sysctl(VS_CONNTRACK, 1)
    _stale(node, out)
    out.append("deleted" if node.delete_conntrack("backend1") >= 1 else "none deleted")
    out.append(f"entries={node.entries_to('backend1')}")
    out.append(node.ask("c1"))
    return out


def row_d6(node: Node) -> list[str]:
    out: list[str] = []
    _stale(node, out)
    node.set_sysctl(EXPIRE_NODEST, 1)
    node.delete_service()
    node.create_service("backend2")
    node.settle()
    out.append(node.ask("c1"))
    return out


SCENARIOS: dict[str, Callable[[Node], list[str]]] = {
    "A": row_a,
    "B": row_b,
    "C": row_c,
    "D1": row_d1,
    "D2": row_d2,
    "D3": row_d3,
    "D4": row_d4,
    "D5": row_d5,
    "D6": row_d6,
}

# What the kernel table says a client sees (the first answer is always backend1: the flow
# before it went stale).
EXPECTED: dict[str, list[str]] = {
    "A": ["backend1", LOST, LOST, LOST, "long", "backend2"],
    "B": ["backend1", "entries=0", "backend2"],
    "C": ["backend1", LOST, "entries=0", "backend2"],
    "D1": ["backend1", LOST, "long", "backend2", "short"],
    "D2": ["backend1", LOST, "backend2"],
    "D3": ["backend1", "entries=0", "backend2"],
    "D4": ["backend1", LOST],
    "D5": ["backend1", "deleted", "entries=1", LOST],
    "D6": ["backend1", "backend2"],
}


class ModelNode:
    """The driver over the modelled dataplane, on a virtual clock."""

    QUIET = 0.5  # what a lost query costs the client, as in the kernel tier

    def __init__(self) -> None:
        self.now = 1000.0
        self.model = ModelledNode(
            lambda: self.now,
            ModelConfig(kernel_version=(6, 1), vs_conntrack=0),
            alive=BACKEND_IPS.values(),
        )
        self.ports: dict[str, int] = {}

    def set_sysctl(self, name: str, value: int) -> None:
        self.model.write(name, value)

    def create_service(self, *backends: str) -> None:
        self.model.add_service(SERVICE)
        for backend in backends:
            self.add_real_server(backend)

    def delete_service(self) -> None:
        self.model.delete_service(SERVICE)

    def add_real_server(self, backend: str) -> None:
        self.model.add_real_server(SERVICE, Endpoint(BACKEND_IPS[backend], 53))

    def remove_real_server(self, backend: str) -> None:
        self.model.remove_real_server(SERVICE, Endpoint(BACKEND_IPS[backend], 53))

    def flush_dead_real_server(self, backend: str) -> None:
        self.model.flush_dead_real_server(SERVICE, Endpoint(BACKEND_IPS[backend], 53))

    def set_udp_timeout(self, seconds: int) -> None:
        self.model.set_timeouts(IPVSTimeouts(tcp=0, tcp_fin=0, udp=seconds))

    def delete_conntrack(self, backend: str) -> int:
        return self.model.delete_udp_entries(VIP, 53, BACKEND_IPS[backend])

    def kill(self, backend: str) -> None:
        self.model.set_alive(BACKEND_IPS[backend], False)

    def ask(self, client: str) -> str:
        port = self.ports.setdefault(client, 40000 + len(self.ports))
        delivery = self.model.deliver_udp((CLIENT_IP, port), VIP, 53, self.now)
        if delivery.outcome is Outcome.ANSWERED and delivery.forwarded_to is not None:
            self.now += 0.01
            return next(name for name, ip in BACKEND_IPS.items() if ip == delivery.forwarded_to.ip)
        self.now += self.QUIET
        return LOST

    def entries_to(self, backend: str) -> int:
        ip = BACKEND_IPS[backend]
        return sum(c.count for c in self.model.connection_counts() if c.destination.ip == ip)

    def seconds_left(self, client: str) -> float:
        entry = self.model.connection((CLIENT_IP, self.ports[client]), VIP, 53)
        return entry.expires_at - self.now if entry is not None else 0.0

    def settle(self) -> None:
        self.now += 0.2
