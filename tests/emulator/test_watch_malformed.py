"""A malformed watch line is an error the caller recovers from (the agent relists), never a crash."""

from __future__ import annotations

from typing import Any

import kmock
import pytest

from proxymedic.emulator.server import KubernetesApiEmulator
from proxymedic.kube.client import ApiError, Connection, KubeClient
from proxymedic.kube.resources import PODS

pytestmark = pytest.mark.emulator


@pytest.mark.parametrize(
    "line",
    [
        {"object": {"metadata": {"name": "a"}}},
        {"type": 7, "object": {}},
        {"type": "ADDED", "object": ["not", "an", "object"]},
        {"type": "ERROR", "object": "gone"},
        ["a", "list"],
    ],
    ids=["no-type", "type-not-a-string", "object-not-an-object", "error-not-a-status", "not-an-object"],
)
async def test_malformed_watch_line_raises_a_value_error(emulator: KubernetesApiEmulator, line: Any) -> None:
    emulator["watch", kmock.resource("v1", "pods")][:1] << (line,)
    async with KubeClient(Connection(server=str(emulator.url).rstrip("/"), ssl_context=False)) as client:
        with pytest.raises(ValueError, match="malformed watch event"):
            async for _ in client.watch(PODS, "0", "default"):
                pass


async def test_an_error_status_without_a_code_is_a_server_error(emulator: KubernetesApiEmulator) -> None:
    emulator["watch", kmock.resource("v1", "pods")][:1] << ({"type": "ERROR", "object": {"code": "x"}},)
    async with KubeClient(Connection(server=str(emulator.url).rstrip("/"), ssl_context=False)) as client:
        with pytest.raises(ApiError) as caught:
            async for _ in client.watch(PODS, "0", "default"):
                pass
    assert caught.value.status == 500
