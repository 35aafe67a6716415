from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from proxymedic.emulator.runner import serve
from proxymedic.emulator.server import KubernetesApiEmulator
from tests.emulator import crds


@pytest.fixture
async def emulator() -> AsyncIterator[KubernetesApiEmulator]:
    async with serve(bookmark_interval=0.2, history_size=50) as api:
        api.register_crd(crds.probe_crd())
        yield api


class Api:
    """A terse HTTP client for assertions: returns (status, parsed JSON body)."""

    def __init__(self, emulator: KubernetesApiEmulator) -> None:
        self.emulator = emulator

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        **params: str,
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self.emulator.request(method, path, data=data, headers=headers, params=params) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if text else None

    async def ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        status, result = await self.call(method, path, body, **kwargs)
        assert status in (200, 201), (status, result)
        return result

    async def watch(
        self, path: str, *, count: int | None = None, within: float = 20.0, **params: str
    ) -> list[dict[str, Any]]:
        """Collect watch events until ``count`` arrived or the server closes the stream."""
        events: list[dict[str, Any]] = []
        async with (
            asyncio.timeout(within),
            self.emulator.get(
                path,
                params={"watch": "true", **params},
            ) as resp,
        ):
            assert resp.status == 200
            async for line in resp.content:
                if line.strip():
                    events.append(json.loads(line))
                if count is not None and len(events) >= count:
                    break
        return events


@pytest.fixture
def api(emulator: KubernetesApiEmulator) -> Api:
    return Api(emulator)
