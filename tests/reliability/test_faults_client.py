"""429 with Retry-After: the API client and the agent wait as long as the server asks."""

from __future__ import annotations

import asyncio
import time

import pytest

from proxymedic.emulator.runner import serve
from proxymedic.kube.client import ApiError, Connection, KubeClient, parse_retry_after, with_backoff
from proxymedic.kube.resources import NODE_HEALTHS, PODS
from tests.reliability.faults_api import Faults
from tests.scenarios.harness import eventually, settled, world

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(60)]


@pytest.mark.parametrize(
    ("header", "body", "expected"),
    [
        ("2", None, 2.0),
        ("0.5", None, 0.5),
        (None, {"details": {"retryAfterSeconds": 3}}, 3.0),
        ("1", {"details": {"retryAfterSeconds": 3}}, 1.0),
        ("9999", None, 60.0),
        ("-5", None, 0.0),
        ("soon", None, None),
        (None, {"details": {"retryAfterSeconds": "3"}}, None),
        (None, None, None),
    ],
    ids=[
        "seconds",
        "fraction",
        "status-details",
        "header-first",
        "capped",
        "negative",
        "garbage",
        "bad-details",
        "none",
    ],
)
def test_parse_retry_after(header: str | None, body: object, expected: float | None) -> None:
    assert parse_retry_after(header, body) == expected


async def test_with_backoff_waits_as_long_as_retry_after_asks() -> None:
    async with serve(keep_requests=False) as emulator:
        faults = Faults(emulator)
        throttled = faults.throttle("list", PODS, budget=2, retry_after=1)
        async with KubeClient(Connection(server=str(emulator.url).rstrip("/"), ssl_context=False)) as client:
            with pytest.raises(ApiError) as caught:
                await client.list(PODS, "default")
            assert caught.value.status == 429
            assert caught.value.retry_after == 1.0
            started = time.monotonic()
            items, _ = await with_backoff(lambda: client.list(PODS, "default"), base=0.01)
            elapsed = time.monotonic() - started
    assert items == []
    assert throttled.injected == 2
    # The client's own backoff (base 10 ms) would retry at once; the server asked for 1 s.
    assert elapsed >= 1.0, elapsed


async def test_agent_writes_no_report_before_retry_after() -> None:
    async with world(2, agent_sense_interval=0.1) as w:
        await settled(w)
        faults = Faults(w.emulator)
        throttled = faults.throttle("patch", NODE_HEALTHS, budget=2, retry_after=2)
        written: dict[str, list[float]] = {name: [] for name in w.agents}
        counts = {name: runner.writes for name, runner in w.agents.items()}

        async def watch_writes() -> None:
            while True:
                for name, runner in w.agents.items():
                    if runner.writes > counts[name]:
                        counts[name] = runner.writes
                        written[name].append(time.monotonic())
                await asyncio.sleep(0.01)

        watcher = asyncio.get_running_loop().create_task(watch_writes())
        try:
            for node in w.nodes.values():  # a material change: both agents want to report at once
                node.model.write("net.ipv4.vs.expire_quiescent_template", 0)
            await eventually(lambda: throttled.spent and all(written[name] for _, name in throttled.seen))
        finally:
            watcher.cancel()
        for at, name in throttled.seen:
            after = [t for t in written[name] if t > at]
            # The next write of a throttled agent comes no sooner than the server asked (2 s),
            # although its sense interval is 0.1 s.
            assert after, (name, written)
            assert after[0] - at >= 1.9, (name, after[0] - at)
