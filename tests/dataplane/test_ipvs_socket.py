"""The IPVS adapter keeps one netlink socket, on one thread, and replaces it when it fails."""

from __future__ import annotations

import asyncio
import errno
import gc
import ipaddress
import os
import threading
import weakref
from typing import Any

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from proxymedic.dataplane.ipvs import NetlinkIPVS
from proxymedic.dataplane.types import DataplaneError, Endpoint, L4Protocol, ServiceKey
from tests.reliability.test_input_sensing import FailingIPVSSocket

pytestmark = pytest.mark.unit

DNS = ServiceKey(L4Protocol.UDP, ipaddress.ip_address("10.96.0.10"), 53)


class Socket(FailingIPVSSocket):
    """A healthy fake socket that remembers the threads using it; ``fail_next`` breaks one call."""

    def __init__(self, sockets: list[Socket]) -> None:
        super().__init__("", 0)
        self.threads: set[int] = {threading.get_ident()}
        self.fail_next: str | None = None
        self.closed = False
        sockets.append(self)

    def _maybe_fail(self, call: str) -> None:
        self.threads.add(threading.get_ident())
        if self.closed:
            raise OSError(errno.EBADF, "used after close")
        if call == self.fail_next:
            self.fail_next = None
            raise NetlinkError(errno.EIO, os.strerror(errno.EIO))

    def close(self) -> None:
        self.closed = True


def adapter() -> tuple[NetlinkIPVS, list[Socket]]:
    sockets: list[Socket] = []
    return NetlinkIPVS(socket_factory=lambda: Socket(sockets)), sockets


async def test_one_socket_serves_every_call_from_every_thread() -> None:
    ipvs, sockets = adapter()
    for _ in range(3):
        assert [vs.key for vs in ipvs.get_services([DNS])] == [DNS]
        await asyncio.gather(*(asyncio.to_thread(ipvs.list_services) for _ in range(4)))
        ipvs.get_timeouts()
        ipvs.remove_real_server(DNS, Endpoint(ipaddress.ip_address("10.244.1.5"), 53))
    assert ipvs.sockets_opened == 1
    [sock] = sockets
    assert len(sock.threads) == 1, "pyroute2 ties a socket to its thread: one thread makes every call"
    assert threading.get_ident() not in sock.threads
    ipvs.close()
    assert sock.closed


def test_a_read_that_fails_on_a_used_socket_is_retried_once_on_a_new_one() -> None:
    ipvs, sockets = adapter()
    ipvs.get_timeouts()
    sockets[0].fail_next = "dump services"  # e.g. the module was reloaded: a new family id
    assert [vs.key for vs in ipvs.list_services()] == [DNS]
    assert ipvs.sockets_opened == 2
    assert sockets[0].closed
    assert not sockets[1].closed


def test_a_read_that_fails_on_a_new_socket_is_not_retried() -> None:
    sockets: list[Socket] = []

    def broken() -> Socket:
        sock = Socket(sockets)
        sock.fail_next = "get config"
        return sock

    ipvs = NetlinkIPVS(socket_factory=broken)
    with pytest.raises(DataplaneError, match="read IPVS timeouts"):
        ipvs.get_timeouts()
    assert ipvs.sockets_opened == 1


def test_a_failed_change_is_not_repeated_and_the_next_call_gets_a_new_socket() -> None:
    ipvs, sockets = adapter()
    ipvs.get_timeouts()
    sockets[0].fail_next = "delete real server"
    with pytest.raises(DataplaneError, match="remove real server"):
        ipvs.remove_real_server(DNS, Endpoint(ipaddress.ip_address("10.244.1.5"), 53))
    assert ipvs.sockets_opened == 1, "a change is never sent twice"
    assert ipvs.remove_real_server(DNS, Endpoint(ipaddress.ip_address("10.244.1.5"), 53)) is True
    assert ipvs.sockets_opened == 2


def test_get_services_leaves_out_what_the_kernel_does_not_have() -> None:
    class Missing(Socket):
        def service(self, command: str, service: Any = None) -> list[Any]:
            raise NetlinkError(errno.ESRCH, "No such process")

    sockets: list[Socket] = []
    ipvs = NetlinkIPVS(socket_factory=lambda: Missing(sockets))
    assert ipvs.get_services([DNS]) == []
    assert ipvs.sockets_opened == 1, "ESRCH is an answer, not a broken socket"


def test_an_adapter_nobody_holds_is_collected_and_its_thread_ends() -> None:
    ipvs, sockets = adapter()
    ipvs.get_timeouts()
    [thread] = [t for t in threading.enumerate() if t.ident == ipvs._thread.ident]
    collected = weakref.ref(ipvs)
    del ipvs
    gc.collect()
    assert collected() is None
    thread.join(timeout=30)  # ends at once; the bound only turns a hang into a failure
    assert not thread.is_alive()
    [sock] = sockets
    assert sock.closed, "its socket is closed, on its own thread"
    assert sock.threads == {thread.ident}
