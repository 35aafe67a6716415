"""The spread scale harness (``bench.spread``) at a tiny scale: API server, operator and node
processes apart, each agent with its own watches (not a benchmark: its code cannot rot)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench.measured import NodeKind, scenario
from bench.spread import NodeProcess, SpreadCluster
from bench.spread_api import audit_writes
from proxymedic.kube.resources import NODE_HEALTHS
from tests.realk8s.binaries import Missing, find

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(300)]

NODES = 3


def _real_api_missing() -> str | None:
    try:
        find()
    except Missing as missing:
        return str(missing)
    return None


@pytest.mark.parametrize(
    "api",
    [
        "emulator",
        pytest.param(
            "real",
            marks=pytest.mark.skipif(
                _real_api_missing() is not None, reason=f"real kube-apiserver: {_real_api_missing()}"
            ),
        ),
    ],
)
async def test_every_agent_repairs_through_its_own_watch(api: str, tmp_path: Path) -> None:
    settings = scenario(
        [NodeKind("healthy", NODES)],
        housekeeping=0.5,
        agent_sense_interval=0.5,
        agent_heartbeat=1.0,
        agent_min_write_interval=0.05,
        query_interval=0.1,
    )
    async with SpreadCluster(settings, tmp_path, workers=2, api=api) as cluster:
        await cluster.wait_ready(within=240)
        healths, _ = await cluster.client.list(NODE_HEALTHS)
        assert sorted(h["metadata"]["name"] for h in healths) == [s.name for s in settings.settings.nodes]
        await cluster.rollout(["10.244.100.20", "10.244.100.21"], lameduck=0.3, surge_wait=0.2)
        async with asyncio.timeout(120):
            await cluster.wait_results(2 * NODES, every=0.2)  # each node flushes each old pod
        assert len(cluster.intents) == 2
        dead = sorted(backends for _, backends in cluster.intents.values())
        assert dead == [("10.244.100.10",), ("10.244.100.11",)]
        collected = await cluster.broadcast("collect", ended=0.0)
    node_results = [r for reply in collected for data in reply["nodes"].values() for r in data["results"]]
    assert len(node_results) == 2 * NODES
    assert all(received is not None and received <= completed for _, completed, _, received in node_results)
    patched = [w for w in cluster.writes if w[1] == "PATCH" and w[2] == "endpointslices"]
    assert len(patched) == 6  # per pod replaced: the new one added, the old one not ready, then gone
    if api == "real":
        assert audit_writes(tmp_path / "audit.log") == cluster.writes


class _Stdin:
    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:
        self.lines.append(json.loads(data))

    async def drain(self) -> None:
        return None


async def test_a_cancelled_command_leaves_no_reply_for_the_next_one() -> None:
    stdout = asyncio.StreamReader()
    process = SimpleNamespace(stdin=_Stdin(), stdout=stdout, pid=1, returncode=None)
    worker = NodeProcess(process, ["node-00001"])  # type: ignore[arg-type]  # the pipes are all it uses
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await worker.call("results")  # sent; its reply comes too late
    stdout.feed_data(b'{"count": 1, "id": 1}\n')
    stdout.feed_data(b'{"reported": 3, "id": 2}\n')
    assert await worker.call("status") == {"reported": 3, "id": 2}
    assert [line["op"] for line in process.stdin.lines] == ["results", "status"]
