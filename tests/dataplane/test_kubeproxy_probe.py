from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from proxymedic.dataplane.kubeproxy import Freshness, ProxyMode, judge
from proxymedic.dataplane.kubeproxy_probe import ProbeConfig, probe_kube_proxy

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]

GOLDEN = Path(__file__).parent / "golden"
METRICS = (GOLDEN / "metrics_iptables.txt").read_text()
HEALTHY = (GOLDEN / "healthz_healthy.json").read_text()
# Fresh relative to the golden iptables page (last sync at 1723900051.34).
PROBE_TIME = 1723900060.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def text(body: str, status: int = 200) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(text=body, status=status)

    return handler


def never() -> Handler:
    """A page that never answers (its server stops before it would)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await asyncio.Event().wait()
        return web.Response(text=METRICS)

    return handler


class FakeKubeProxy:
    """kube-proxy's two HTTP servers on one port: /metrics, /proxyMode and /healthz."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {
            "/metrics": text(METRICS),
            "/proxyMode": text("iptables"),
            "/healthz": text(HEALTHY),
        }
        self.port = 0

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        return await self.routes[request.path](request)

    def config(self, timeout: float = 8.0) -> ProbeConfig:
        return ProbeConfig(metrics_port=self.port, healthz_port=self.port, timeout_seconds=timeout)


@pytest.fixture
async def kube_proxy() -> AsyncIterator[FakeKubeProxy]:
    fake = FakeKubeProxy()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", fake.dispatch)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.port = runner.addresses[0][1]
    yield fake
    await runner.cleanup()


async def test_healthy_kube_proxy_is_fresh(kube_proxy: FakeKubeProxy) -> None:
    observation = await probe_kube_proxy(kube_proxy.config(), clock=lambda: PROBE_TIME)
    assert observation.mode is ProxyMode.IPTABLES
    assert observation.healthz is not None
    assert observation.healthz.healthy
    assert observation.metrics is not None
    assert (observation.metrics_error, observation.mode_error, observation.healthz_error) == (
        None,
        None,
        None,
    )
    assert judge(observation).freshness is Freshness.FRESH


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_unreachable_kube_proxy_is_unknown() -> None:
    port = free_port()
    config = ProbeConfig(metrics_port=port, healthz_port=port, timeout_seconds=1.0)
    observation = await probe_kube_proxy(config, clock=lambda: PROBE_TIME)
    assert observation.metrics is None
    assert observation.healthz is None
    assert observation.mode is None
    assert observation.metrics_error is not None
    assert "/metrics" in observation.metrics_error
    verdict = judge(observation)
    assert verdict.freshness is Freshness.UNKNOWN
    assert "unavailable" in verdict.reason


@pytest.mark.parametrize(
    ("route", "handler", "error"),
    [
        ("/metrics", text("internal error", status=500), "HTTP 500"),
        ("/metrics", text("\x00\x01 garbage {{{ \n"), "/metrics"),
        ("/metrics", text("# only comments\n"), "is missing"),
        ("/metrics", never(), "no answer within"),
    ],
    ids=["http-500", "garbage", "no-sync-metric", "slow"],
)
async def test_broken_metrics_endpoint_is_unknown(
    kube_proxy: FakeKubeProxy, route: str, handler: Handler, error: str
) -> None:
    kube_proxy.routes[route] = handler
    # Only the page that never answers may run into the timeout: the others answer at once, and
    # a busy machine must not turn "at once" into "too late".
    timeout = 1.0 if error == "no answer within" else 8.0
    observation = await probe_kube_proxy(kube_proxy.config(timeout=timeout), clock=lambda: PROBE_TIME)
    assert observation.metrics is None
    assert observation.metrics_error is not None
    assert error in observation.metrics_error
    assert observation.mode is ProxyMode.IPTABLES  # the other pages still count
    assert judge(observation).freshness is Freshness.UNKNOWN


@pytest.mark.parametrize(
    ("route", "handler", "field"),
    [
        ("/healthz", text("{not json", status=200), "healthz_error"),
        ("/healthz", text("Not Found", status=404), "healthz_error"),
        ("/proxyMode", text("<html>oops</html>"), "mode_error"),
        ("/proxyMode", text("", status=500), "mode_error"),
    ],
    ids=["healthz-garbage", "healthz-404", "mode-garbage", "mode-500"],
)
async def test_broken_side_pages_are_reported_not_raised(
    kube_proxy: FakeKubeProxy, route: str, handler: Handler, field: str
) -> None:
    kube_proxy.routes[route] = handler
    observation = await probe_kube_proxy(kube_proxy.config(), clock=lambda: PROBE_TIME)
    assert getattr(observation, field) is not None
    assert judge(observation).freshness is Freshness.FRESH  # metrics alone decide here


async def test_unhealthy_healthz_with_old_update_is_stale(kube_proxy: FakeKubeProxy) -> None:
    kube_proxy.routes["/healthz"] = text((GOLDEN / "healthz_stale.json").read_text(), status=503)
    observation = await probe_kube_proxy(kube_proxy.config(), clock=lambda: PROBE_TIME)
    verdict = judge(observation)
    assert verdict.freshness is Freshness.STALE
    assert "healthz reports unhealthy" in verdict.reason
