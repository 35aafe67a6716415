"""The async fetch layer of the kube-proxy probe: short timeouts, and nothing read ever raises.

Unreachable ports, timeouts, non-200 answers and garbage become error texts in the
observation, which ``kubeproxy.judge`` turns into Unknown.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from proxymedic.dataplane.kubeproxy import (
    Healthz,
    KubeProxyObservation,
    MetricsPageError,
    ProxyMode,
    SyncMetrics,
    parse_healthz,
    parse_metrics,
)

# A page bigger than this is not kube-proxy's (a real one is tens of kilobytes).
MAX_BODY_BYTES = 4 << 20


@dataclass(frozen=True)
class ProbeConfig:
    host: str = "127.0.0.1"
    metrics_port: int = 10249
    healthz_port: int = 10256
    timeout_seconds: float = 2.0


@dataclass(frozen=True)
class _Answer:
    status: int
    body: str


async def _get(session: aiohttp.ClientSession, config: ProbeConfig, port: int, path: str) -> _Answer:
    """GET one kube-proxy page; raise ValueError with a short reason on any failure."""
    url = f"http://{config.host}:{port}{path}"
    timeout = config.timeout_seconds
    try:
        async with session.get(
            url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
        ) as response:
            # read(n) returns what has arrived, up to n bytes: read to the end, within the bound.
            raw = bytearray()
            async for chunk in response.content.iter_chunked(1 << 16):
                raw += chunk
                if len(raw) > MAX_BODY_BYTES:
                    raise ValueError(f"{url}: body larger than {MAX_BODY_BYTES} bytes")
            return _Answer(response.status, raw.decode("utf-8", "replace"))
    except TimeoutError:
        raise ValueError(f"{url}: no answer within {timeout:g} s") from None
    except aiohttp.ClientError as exc:
        raise ValueError(f"{url}: {type(exc).__name__}: {exc}"[:300]) from None


async def _fetch_metrics(session: aiohttp.ClientSession, config: ProbeConfig) -> SyncMetrics:
    answer = await _get(session, config, config.metrics_port, "/metrics")
    if answer.status != 200:
        raise ValueError(f"/metrics answered HTTP {answer.status}")
    try:
        return parse_metrics(answer.body)
    except MetricsPageError as exc:
        raise ValueError(f"/metrics: {exc}") from None


async def _fetch_mode(session: aiohttp.ClientSession, config: ProbeConfig) -> ProxyMode:
    answer = await _get(session, config, config.metrics_port, "/proxyMode")
    if answer.status != 200:
        raise ValueError(f"/proxyMode answered HTTP {answer.status}")
    mode = ProxyMode.parse(answer.body)
    if mode is None:
        raise ValueError(f"/proxyMode answered {answer.body[:40]!r}")
    return mode


async def _fetch_healthz(session: aiohttp.ClientSession, config: ProbeConfig) -> Healthz:
    answer = await _get(session, config, config.healthz_port, "/healthz")
    return parse_healthz(answer.status, answer.body)


def _error_text(result: object) -> str | None:
    return str(result) if isinstance(result, BaseException) else None


async def probe_kube_proxy(
    config: ProbeConfig | None = None,
    session: aiohttp.ClientSession | None = None,
    clock: Callable[[], float] = time.time,
) -> KubeProxyObservation:
    """Fetch /metrics, /proxyMode and /healthz concurrently. Never raises on what it reads.

    Unreachable ports, timeouts, non-200 answers and garbage become ``*_error`` texts,
    which ``judge`` turns into Unknown.
    """
    config = config or ProbeConfig()
    own_session = session is None
    active = session or aiohttp.ClientSession()
    try:
        metrics, mode, healthz = await asyncio.gather(
            _fetch_metrics(active, config),
            _fetch_mode(active, config),
            _fetch_healthz(active, config),
            return_exceptions=True,
        )
    finally:
        if own_session:
            await active.close()
    for result in (metrics, mode, healthz):
        # Programming errors and cancellation are not observations: let them out.
        if isinstance(result, BaseException) and not isinstance(result, ValueError):
            raise result
    return KubeProxyObservation(
        observed_at=clock(),
        metrics=metrics if isinstance(metrics, SyncMetrics) else None,
        metrics_error=_error_text(metrics),
        mode=mode if isinstance(mode, ProxyMode) else None,
        mode_error=_error_text(mode),
        healthz=healthz if isinstance(healthz, Healthz) else None,
        healthz_error=_error_text(healthz),
    )
