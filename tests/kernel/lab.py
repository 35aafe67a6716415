"""The kernel table's topology (docs/kernel.md) in network namespaces, built with iproute2,
driven from one process.

```
   pmk-client (10.0.0.2, fd00::2)          pmk-b1 (10.0.1.2, fd00:1::2)   backend1
        │ veth                                   │ veth
   ┌────┴──────────── pmk-node ──────────────────┴──────┐
   │ dummy pmk-vip: 10.96.0.10/32, fd00:96::10/128      │  IPVS, conntrack, sysctls
   │ forwarding on; IPVS NAT (masq) to the backends     │
   └────────────────────────────────────────────────────┘
                                                 │ veth
                                           pmk-b2 (10.0.2.2, fd00:2::2)   backend2
```

The "node" is a namespace of its own, so the tests never touch the host's IPVS table. The
test process's main thread enters the node namespace (``enter``) for its whole run: the
adapters, ``/proc/net`` and ``/proc/sys/net`` and every oracle subprocess then see the
node. UDP servers and the client are sockets created in their namespaces by a thread that
switches briefly (setns affects only the calling thread) and are served by one thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import json
import os
import selectors
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CLONE_NEWNET = 0x40000000
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
NODE, CLIENT = "pmk-node", "pmk-client"
VIP4, VIP6 = ipaddress.IPv4Address("10.96.0.10"), ipaddress.IPv6Address("fd00:96::10")


def need_tool(name: str) -> str:
    """The tool's path, or skip the calling test (tools are checked when a test needs them)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"needs the {name} command: run scripts/vm/setup.sh")
    return path


def run(*argv: str, check: bool = True, ns: str | None = None) -> str:
    """Run a command (in the caller's thread namespace, or ``ip netns exec ns``); return stdout."""
    cmd = ["ip", "netns", "exec", ns, *argv] if ns else list(argv)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def ip_batch(lines: list[str], ns: str | None = None) -> None:
    """Many iproute2 commands in one process start (emulated CPUs make starts expensive)."""
    argv = ["ip", *(["-n", ns] if ns else []), "-batch", "-"]
    proc = subprocess.run(
        argv, input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Switch the calling thread into /run/netns/<name> and back."""
    with open("/proc/thread-self/ns/net") as here, open(f"/run/netns/{name}") as there:
        _setns(there.fileno())
        try:
            yield
        finally:
            _setns(here.fileno())


def sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def sysctl_write(name: str, value: int) -> None:
    sysctl_path(name).write_text(f"{value}\n")


def sysctl_read(name: str) -> int:
    return int(sysctl_path(name).read_text())


@dataclass
class Backend:
    name: str
    ns: str
    link: str  # node-side veth
    ip4: ipaddress.IPv4Address
    ip6: ipaddress.IPv6Address


BACKENDS = (
    Backend(
        "backend1", "pmk-b1", "pmk-b1n", ipaddress.IPv4Address("10.0.1.2"), ipaddress.IPv6Address("fd00:1::2")
    ),
    Backend(
        "backend2", "pmk-b2", "pmk-b2n", ipaddress.IPv4Address("10.0.2.2"), ipaddress.IPv6Address("fd00:2::2")
    ),
)


class Lab:
    """Namespaces, echo backends and the client; create with ``Lab.build()``."""

    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.servers: dict[str, list[socket.socket]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="echo-backends", daemon=True)
        self._wake_r, self._wake_w = socket.socketpair()
        self.sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._node_fd: int | None = None
        self._home_fd: int | None = None
        self._next_port = 40000
        self.clients: list[Client] = []

    # --- construction -------------------------------------------------------------------

    @classmethod
    def build(cls) -> Lab:
        lab = cls()
        try:
            lab._setup()
        except BaseException:
            lab.close()
            raise
        return lab

    def _setup(self) -> None:
        self._teardown_netns()
        names = (NODE, CLIENT, *(b.ns for b in BACKENDS))
        ip_batch([f"netns add {ns}" for ns in names])
        for ns in names:  # no duplicate address detection: link-local addresses usable at once
            with in_netns(ns):
                sysctl_write("net.ipv6.conf.default.accept_dad", 0)
                sysctl_write("net.ipv6.conf.all.accept_dad", 0)
                # a "dead" backend's link goes down and up again: keep its IPv6 addresses
                sysctl_write("net.ipv6.conf.default.keep_addr_on_down", 1)
                sysctl_write("net.ipv6.conf.all.keep_addr_on_down", 1)
        node = [
            "link set lo up",
            "link add pmk-vip type dummy",
            "link set pmk-vip up",
            f"addr add {VIP4}/32 dev pmk-vip",
            f"addr add {VIP6}/128 dev pmk-vip nodad",
            f"link add pmk-cn type veth peer name eth0 netns {CLIENT}",
            "addr add 10.0.0.1/24 dev pmk-cn",
            "addr add fd00::1/64 dev pmk-cn nodad",
            "link set pmk-cn up",
        ]
        for i, b in enumerate(BACKENDS, start=1):
            node += [
                f"link add {b.link} type veth peer name eth0 netns {b.ns}",
                f"addr add 10.0.{i}.1/24 dev {b.link}",
                f"addr add fd00:{i}::1/64 dev {b.link} nodad",
                f"link set {b.link} up",
            ]
        ip_batch(node, NODE)
        ends = [(CLIENT, "10.0.0.2", "fd00::2", "10.0.0.1", "fd00::1")]
        ends += [
            (b.ns, str(b.ip4), str(b.ip6), f"10.0.{i}.1", f"fd00:{i}::1") for i, b in enumerate(BACKENDS, 1)
        ]
        for ns, ip4, ip6, gw4, gw6 in ends:
            ip_batch(
                [
                    "link set lo up",
                    f"addr add {ip4}/24 dev eth0",
                    f"addr add {ip6}/64 dev eth0 nodad",
                    "link set eth0 up",
                    f"route add default via {gw4}",
                    f"route add ::/0 via {gw6}",
                ],
                ns,
            )
        with in_netns(NODE):
            sysctl_write("net.ipv4.ip_forward", 1)
            sysctl_write("net.ipv6.conf.all.forwarding", 1)
        for b in BACKENDS:
            self.start_backend(b)
        self._thread.start()
        self.warm_up()

    def warm_up(self) -> None:
        """Ask every backend directly (resolves neighbours; proves the lab before any test)."""
        for version in (4, 6):
            probe = self.client(version)
            try:
                for b in BACKENDS:
                    probe.vip = b.ip6 if version == 6 else b.ip4
                    answers = [probe.ask(2.0) for _ in range(3)]
                    if b.name not in answers:
                        raise RuntimeError(f"lab broken: {b.name} does not answer over IPv{version}")
            finally:
                self.close_clients()

    def _teardown_netns(self) -> None:
        existing = set(run("ip", "netns", "list", check=False).split())
        for ns in (NODE, CLIENT, *(b.ns for b in BACKENDS)):
            if ns in existing:
                run("ip", "netns", "del", ns, check=False)

    def close(self) -> None:
        self.close_clients()
        self.leave()
        self._stop.set()
        if self._thread.is_alive():
            self._wake_w.send(b"x")
            self._thread.join(timeout=5)
        for socks in self.servers.values():
            for s in socks:
                s.close()
        self.sel.close()
        self._wake_r.close()
        self._wake_w.close()
        self._teardown_netns()

    # --- the test process lives in the node --------------------------------------------

    def enter(self) -> None:
        """Move the calling (main) thread into the node namespace until ``leave``."""
        self._home_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        self._node_fd = os.open(f"/run/netns/{NODE}", os.O_RDONLY)
        _setns(self._node_fd)

    def leave(self) -> None:
        if self._home_fd is not None:
            _setns(self._home_fd)
            os.close(self._home_fd)
            self._home_fd = None
        if self._node_fd is not None:
            os.close(self._node_fd)
            self._node_fd = None

    # --- backends -------------------------------------------------------------------------

    def start_backend(self, b: Backend) -> None:
        """Echo server on port 53, v4 and v6, answering with the backend's name."""
        socks = []
        with in_netns(b.ns):
            for fam, addr in ((socket.AF_INET, str(b.ip4)), (socket.AF_INET6, str(b.ip6))):
                s = socket.socket(fam, socket.SOCK_DGRAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((addr, 53))
                s.setblocking(False)
                socks.append(s)
        with self._lock:
            self.servers[b.name] = socks
            for s in socks:
                self.sel.register(s, selectors.EVENT_READ, b.name)
        self._wake_w.send(b"x")

    def kill_backend(self, b: Backend) -> None:
        """The pod dies: its server stops and its link goes down (packets to it are lost)."""
        with self._lock:
            for s in self.servers.pop(b.name, []):
                self.sel.unregister(s)
                s.close()
        run("ip", "link", "set", b.link, "down")

    def revive_backend(self, b: Backend) -> None:
        run("ip", "link", "set", b.link, "up")
        if b.name not in self.servers:
            self.start_backend(b)

    def _serve(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                events = self.sel.select(timeout=0)
            if not events:
                # Block outside the lock; the wake socket interrupts on (un)registration.
                ready = self.sel.select(timeout=0.5)
                if not ready:
                    continue
                with self._lock:
                    events = self.sel.select(timeout=0)
            for key, _ in events:
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if key.data is None:
                    sock.recv(64)
                    continue
                with contextlib.suppress(OSError):
                    _, peer = sock.recvfrom(2048)
                    sock.sendto(str(key.data).encode(), peer)

    # --- the client -----------------------------------------------------------------------

    def new_port(self) -> int:
        self._next_port += 1
        return self._next_port

    def client(self, version: int = 4, port: int | None = None) -> Client:
        fam = socket.AF_INET6 if version == 6 else socket.AF_INET
        addr = "fd00::2" if version == 6 else "10.0.0.2"
        with in_netns(CLIENT):
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port or self.new_port()))
        client = Client(s, VIP6 if version == 6 else VIP4)
        self.clients.append(client)
        return client

    def close_clients(self) -> None:
        for c in self.clients:
            c.close()
        self.clients.clear()


class Client:
    """A UDP client that re-uses one source port, like a resolver behind a fixed port."""

    def __init__(self, sock: socket.socket, vip: IPAddr) -> None:
        self.sock = sock
        self.vip = vip
        self.port = int(sock.getsockname()[1])

    def ask(self, timeout: float = 1.0, port: int = 53) -> str | None:
        """Send one query to VIP:port; the answering backend's name, or None on timeout."""
        while True:  # drop late answers to earlier queries
            self.sock.setblocking(False)
            try:
                self.sock.recv(2048)
            except BlockingIOError:
                break
        self.sock.setblocking(True)
        self.sock.settimeout(timeout)
        self.sock.sendto(b"q", (str(self.vip), port))
        try:
            data = self.sock.recv(2048)
        except TimeoutError:
            return None
        return data.decode()

    def close(self) -> None:
        self.sock.close()


# --- the IPVS connection table, read from /proc (independent of the adapters) ---------------


@dataclass(frozen=True)
class IPVSConn:
    proto: str
    client: str
    cport: int
    vip: str
    vport: int
    dest: str
    dport: int
    state: str
    expires: int


def _proc_addr(field: str) -> str:
    if ":" in field:  # IPv6 is printed as text
        return str(ipaddress.ip_address(field))
    return str(ipaddress.IPv4Address(int(field, 16)))


def ipvs_conns() -> list[IPVSConn]:
    """Rows of /proc/net/ip_vs_conn in the node namespace (v4 and v6)."""
    rows = []
    for line in Path("/proc/net/ip_vs_conn").read_text().splitlines()[1:]:
        f = line.split()
        if len(f) < 9:
            continue
        rows.append(
            IPVSConn(
                f[0],
                _proc_addr(f[1]),
                int(f[2], 16),
                _proc_addr(f[3]),
                int(f[4], 16),
                _proc_addr(f[5]),
                int(f[6], 16),
                f[7],
                int(f[8]),
            )
        )
    return rows


def conns_of(client: Client) -> list[IPVSConn]:
    return [c for c in ipvs_conns() if c.cport == client.port and c.client != ""]


def report(key: str, value: object) -> None:
    """Record a measurement in $KERNEL_REPORT_DIR/measurements.json (the VM run sets the variable)."""
    out_dir = os.environ.get("KERNEL_REPORT_DIR")
    if not out_dir:
        return
    path = Path(out_dir, "measurements.json")
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def wait_until(predicate: object, timeout: float = 3.0, step: float = 0.05) -> float | None:
    """Poll ``predicate()`` until true; the seconds it took, or None on timeout."""
    assert callable(predicate)
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(step)
    return None
