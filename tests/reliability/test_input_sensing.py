"""Hostile node input never crashes the agent's sensing: the signal becomes unknown, with the reason.

kube-proxy's pages are served over real HTTP to the real probe; /proc files are read by the real
readers from files holding the hostile content; netlink errors are raised where pyroute2's sockets
meet the real IPVS and ctnetlink adapters. Every case ends in ``sense()``, the function each
sensing round runs, and in a status the model accepts.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import struct
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pyroute2.netlink.exceptions import NetlinkError

from proxymedic.agent.executor import execute
from proxymedic.agent.node import NodeDataplane
from proxymedic.agent.sensing import LocalFindings, SenseSettings, sense
from proxymedic.api.health import NodeProxyHealthStatus
from proxymedic.api.intent import RemediationIntent
from proxymedic.dataplane.conntrack import NetlinkConntrack
from proxymedic.dataplane.ipvs import NetlinkIPVS
from proxymedic.dataplane.kubeproxy import KubeProxyObservation
from proxymedic.dataplane.kubeproxy_probe import ProbeConfig, probe_kube_proxy
from proxymedic.dataplane.procfs import ProcConnectionTable
from proxymedic.dataplane.sysctl import ProcSysctl
from proxymedic.dataplane.types import Endpoint, L4Protocol, ServiceKey
from proxymedic.sim.kernel import ModelConfig, ModelledNode
from tests.reliability.input_sensing import (
    CONNTRACK_SENSING_CALLS,
    HEALTHY,
    HEALTHZ_BODIES,
    IP_VS_CONN,
    IPVS_REPAIR_CALLS,
    IPVS_SENSING_CALLS,
    METRICS_PAGES,
    NETLINK_ERRNOS,
    NOW,
    SYSCTL_FILES,
    SYSCTL_OPEN_ERRNOS,
)
from tests.unit.factories import intent

pytestmark = pytest.mark.unit

VIP, DEAD, LIVE = (ipaddress.ip_address(ip) for ip in ("10.96.0.10", "10.244.1.5", "10.244.2.7"))
DNS = ServiceKey(L4Protocol.UDP, VIP, 53)
EXPIRE = "net.ipv4.vs.expire_nodest_conn"
PAGE_SECONDS = 5.0
"""Probing and judging any page, the largest accepted one included, takes less than this."""


def modelled() -> ModelledNode:
    model = ModelledNode(lambda: NOW, ModelConfig(expire_nodest_conn=1), alive=[LIVE])
    model.add_service(DNS)
    model.add_real_server(DNS, Endpoint(LIVE, 53))
    return model


async def no_probe() -> KubeProxyObservation:
    return KubeProxyObservation(observed_at=NOW, metrics_error="not probed here")


def dataplane(**parts: Any) -> NodeDataplane:
    model = modelled()
    defaults: dict[str, Any] = {
        "ipvs": None,
        "connections": None,
        "conntrack": None,
        "sysctls": model,
        "probe": no_probe,
        "clock": lambda: NOW,
    }
    return NodeDataplane(**{**defaults, **parts})


async def sensed(dp: NodeDataplane) -> NodeProxyHealthStatus:
    status = await sense(dp, SenseSettings(), LocalFindings(), "test")
    # What the runner writes must be what the model (and so the CRD) accepts.
    return NodeProxyHealthStatus.model_validate(status.model_dump(mode="json", by_alias=True))


# --- kube-proxy's pages over HTTP -------------------------------------------------------------------


@dataclass
class KubeProxyPages:
    metrics: tuple[int, bytes] = (200, b"")
    healthz: tuple[int, bytes] = (200, HEALTHY.encode())
    config: ProbeConfig = field(default_factory=ProbeConfig)


@pytest.fixture
async def kube_proxy() -> AsyncIterator[KubeProxyPages]:
    pages = KubeProxyPages()

    async def metrics(_: web.Request) -> web.Response:
        status, body = pages.metrics
        headers = {"Location": "http://127.0.0.1:1/"} if status == 302 else None
        return web.Response(status=status, body=body, headers=headers)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(status=pages.healthz[0], body=pages.healthz[1])

    async def mode(_: web.Request) -> web.Response:
        return web.Response(text="ipvs")

    app = web.Application(client_max_size=16 << 20)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/proxyMode", mode)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    pages.config = ProbeConfig(metrics_port=port, healthz_port=port, timeout_seconds=5.0)
    try:
        yield pages
    finally:
        await runner.cleanup()


def probing(pages: KubeProxyPages) -> Callable[[], Any]:
    async def probe() -> KubeProxyObservation:
        return await probe_kube_proxy(pages.config, clock=lambda: NOW)

    return probe


@pytest.mark.parametrize(
    ("status", "body", "freshness", "words"), METRICS_PAGES.values(), ids=METRICS_PAGES.keys()
)
async def test_hostile_metrics_pages_are_unknown_or_judged_never_a_crash(
    kube_proxy: KubeProxyPages, status: int, body: bytes, freshness: str, words: str
) -> None:
    kube_proxy.metrics = (status, body)
    started = time.perf_counter()
    report = await sensed(dataplane(probe=probing(kube_proxy)))
    assert time.perf_counter() - started < PAGE_SECONDS
    assert report.kube_proxy.freshness == freshness, report.kube_proxy.reason
    assert words in report.kube_proxy.reason
    assert report.proxy_mode == "ipvs", "the other pages are still read"


@pytest.mark.parametrize(("status", "body", "healthz"), HEALTHZ_BODIES.values(), ids=HEALTHZ_BODIES.keys())
async def test_hostile_healthz_answers_never_make_a_stale_verdict(
    kube_proxy: KubeProxyPages, status: int, body: bytes, healthz: str
) -> None:
    kube_proxy.metrics = METRICS_PAGES["valid"][:2]
    kube_proxy.healthz = (status, body)
    report = await sensed(dataplane(probe=probing(kube_proxy)))
    assert report.kube_proxy.healthz == healthz
    assert report.kube_proxy.freshness == "Fresh", report.kube_proxy.reason


# --- /proc/net/ip_vs_conn ---------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "orphaned"), IP_VS_CONN.values(), ids=IP_VS_CONN.keys())
async def test_hostile_connection_tables_count_only_real_lines(
    tmp_path: Path, content: bytes, orphaned: int
) -> None:
    table = tmp_path / "ip_vs_conn"
    table.write_bytes(content)
    model = modelled()
    started = time.perf_counter()
    report = await sensed(dataplane(ipvs=model, connections=ProcConnectionTable(table)))
    assert time.perf_counter() - started < PAGE_SECONDS
    assert report.problems == []
    [vs] = report.virtual_servers
    found = {(o.ip, o.port): o.connections for o in vs.orphaned_connections}
    assert found.get(("10.244.1.5", 53), 0) == orphaned
    assert [rs.ip for rs in vs.real_servers] == ["10.244.2.7"]


@pytest.mark.parametrize("kind", ["missing", "directory"])
async def test_an_unreadable_connection_table_is_a_named_problem(tmp_path: Path, kind: str) -> None:
    table = tmp_path / "ip_vs_conn"
    if kind == "directory":
        table.mkdir()
    report = await sensed(dataplane(ipvs=modelled(), connections=ProcConnectionTable(table)))
    assert report.virtual_servers == [], "unknown, not empty-and-clean: the operator gets no evidence"
    assert len(report.problems) == 1
    assert report.problems[0].startswith(f"IPVS: {table}") or f"cannot read {table}" in report.problems[0]


# --- sysctl files -----------------------------------------------------------------------------------


def sysctl_tree(root: Path, content: bytes) -> ProcSysctl:
    path = root / "net" / "ipv4" / "vs" / "expire_nodest_conn"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    return ProcSysctl(root)


@pytest.mark.parametrize(("content", "value"), SYSCTL_FILES.values(), ids=SYSCTL_FILES.keys())
async def test_hostile_sysctl_files_are_unknown(tmp_path: Path, content: bytes, value: int | None) -> None:
    report = await sensed(dataplane(sysctls=sysctl_tree(tmp_path, content)))
    assert report.sysctls.get(EXPIRE) == value
    assert report.problems == [], "an unreadable value is unknown, not a problem of the agent"


@pytest.mark.parametrize("code", SYSCTL_OPEN_ERRNOS, ids=[errno.errorcode[c] for c in SYSCTL_OPEN_ERRNOS])
async def test_sysctl_open_errors_are_unknown(tmp_path: Path, code: int) -> None:
    def refuse(path: str, flags: int) -> int:
        raise OSError(code, os.strerror(code), path)

    report = await sensed(dataplane(sysctls=ProcSysctl(tmp_path, opener=refuse)))
    assert report.sysctls == {}
    assert report.problems == []


# --- netlink errors at the adapter boundary ---------------------------------------------------------


class Msg:
    """A decoded netlink message as pyroute2 hands it to the adapters: attributes by name."""

    def __init__(self, **attrs: Any) -> None:
        self.attrs = attrs

    def get_attr(self, name: str) -> Any:
        return self.attrs.get(name)


def _dest(ip: str) -> Msg:
    return Msg(
        IPVS_CMD_ATTR_DEST=Msg(IPVS_DEST_ATTR_ADDR=ip, IPVS_DEST_ATTR_PORT=53, IPVS_DEST_ATTR_WEIGHT=1)
    )


class FailingIPVSSocket:
    """pyroute2's IPVS socket on a node with one UDP service (dead and live real servers), whose
    kernel answers one call with an error."""

    prid = 0x20

    def __init__(self, failing: str, code: int) -> None:
        self.failing, self.code = failing, code

    def _maybe_fail(self, call: str) -> None:
        if call == self.failing:
            raise NetlinkError(self.code, os.strerror(self.code))

    def close(self) -> None:
        pass

    def service(self, command: str, service: Any = None) -> list[Msg]:
        self._maybe_fail("get service" if command == "get" else "dump services")
        svc = Msg(IPVS_SVC_ATTR_ADDR="10.96.0.10", IPVS_SVC_ATTR_PROTOCOL=17, IPVS_SVC_ATTR_PORT=53)
        return [Msg(IPVS_CMD_ATTR_SERVICE=svc)]

    def dest(self, command: str, **_: Any) -> list[Msg]:
        if command == "del":
            self._maybe_fail("delete real server")
            return []
        self._maybe_fail("dump real servers")
        return [_dest("10.244.1.5"), _dest("10.244.2.7")]

    def nlm_request(self, *_: Any, **__: Any) -> list[Msg]:
        self._maybe_fail("get config")
        raw = {
            name: struct.pack("<I", value) for name, value in (("TCP", 900), ("TCP_FIN", 120), ("UDP", 300))
        }
        return [Msg(**{f"IPVS_CMD_ATTR_TIMEOUT_{name}": value for name, value in raw.items()})]


def failing_ipvs(call: str, code: int) -> NetlinkIPVS:
    def factory() -> FailingIPVSSocket:
        if call == "open socket":
            raise NetlinkError(code, os.strerror(code))
        return FailingIPVSSocket(call, code)

    return NetlinkIPVS(socket_factory=factory)


IPVS_WORDS = {
    "open socket": "open IPVS generic netlink family",
    "get config": "read IPVS timeouts",
    "dump services": "dump IPVS services",
    "dump real servers": "dump real servers of 10.96.0.10:53/UDP",
}


def _errno_ids(codes: tuple[int, ...]) -> list[str]:
    return [errno.errorcode[code] for code in codes]


@pytest.mark.parametrize("code", NETLINK_ERRNOS, ids=_errno_ids(NETLINK_ERRNOS))
@pytest.mark.parametrize("call", IPVS_SENSING_CALLS)
async def test_ipvs_netlink_errors_make_the_ipvs_signal_unknown(call: str, code: int) -> None:
    report = await sensed(dataplane(ipvs=failing_ipvs(call, code)))
    assert report.virtual_servers == []
    if call in ("open socket", "get config"):
        assert report.ipvs is None
    [problem] = report.problems
    assert problem.startswith("IPVS: "), problem
    assert IPVS_WORDS[call] in problem, problem
    if code in (errno.EPERM, errno.EACCES):
        assert "needs CAP_NET_ADMIN" in problem


class FailingConntrackSocket:
    def __init__(self, failing: str, code: int) -> None:
        self.failing, self.code = failing, code

    def close(self) -> None:
        pass

    def count(self) -> list[Msg]:
        if self.failing == "count":
            raise NetlinkError(self.code, os.strerror(self.code))
        return [Msg(CTA_STATS_GLOBAL_ENTRIES=10, CTA_STATS_GLOBAL_MAX_ENTRIES=100)]

    def stat(self) -> list[Msg]:
        if self.failing == "stat":
            raise NetlinkError(self.code, os.strerror(self.code))
        return [Msg(CTA_STATS_DROP=1)]


def failing_conntrack(call: str, code: int, proc_sys: Path) -> NetlinkConntrack:
    def factory(_family: int) -> FailingConntrackSocket:
        if call == "open socket":
            raise NetlinkError(code, os.strerror(code))
        return FailingConntrackSocket(call, code)

    return NetlinkConntrack(socket_factory=factory, proc_sys=proc_sys)


@pytest.mark.parametrize("fallback", [True, False], ids=["with-proc", "without-proc"])
@pytest.mark.parametrize("code", NETLINK_ERRNOS, ids=_errno_ids(NETLINK_ERRNOS))
@pytest.mark.parametrize("call", CONNTRACK_SENSING_CALLS)
async def test_ctnetlink_errors_fall_back_or_leave_conntrack_unknown(
    tmp_path: Path, call: str, code: int, fallback: bool
) -> None:
    if fallback:
        (tmp_path / "nf_conntrack_count").write_text("7\n")
        (tmp_path / "nf_conntrack_max").write_text("131072\n")
    report = await sensed(dataplane(conntrack=failing_conntrack(call, code, tmp_path)))
    if fallback:
        assert report.conntrack is not None
        assert (report.conntrack.count, report.conntrack.max, report.conntrack.drops) == (7, 131072, None)
        assert report.problems == []
    else:
        assert report.conntrack is None
        [problem] = report.problems
        assert problem.startswith("conntrack: read conntrack statistics"), problem
        assert "/proc fallback failed" in problem


@pytest.mark.parametrize("code", NETLINK_ERRNOS, ids=_errno_ids(NETLINK_ERRNOS))
@pytest.mark.parametrize("call", IPVS_REPAIR_CALLS)
async def test_netlink_errors_while_repairing_are_failed_results(call: str, code: int) -> None:
    raw = intent(liveBackends=["10.244.2.7"], steps=["RemoveRealServers"])
    dp = dataplane(ipvs=failing_ipvs(call, code))
    result = await execute(RemediationIntent.model_validate(raw), dp)
    if code in (errno.ENOENT, errno.ESRCH):  # the kernel says it is gone already: nothing to do
        assert (result.outcome, result.message) == ("AlreadyClean", "nothing to do")
        return
    assert result.outcome == "Failed"
    words = {"get service": "IPVS: get IPVS service 10.96.0.10:53/UDP"}
    expected = words.get(call, "IPVS: remove real server 10.244.1.5:53 from 10.96.0.10:53/UDP")
    assert result.message.startswith(expected), result.message
    if code in (errno.EPERM, errno.EACCES):
        assert "needs CAP_NET_ADMIN" in result.message
