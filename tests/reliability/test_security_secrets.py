"""No credential in logs, Events or error messages: the agent and the operator run with a bearer
token holding a recognisable value, against an API server that refuses it (401, 403) and against the
emulator; nothing they log, post or raise repeats it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from proxymedic.agent.agent import AgentSettings, NodeAgent
from proxymedic.agent.runner import AgentRunner
from proxymedic.emulator.runner import serve
from proxymedic.kube.client import ApiError, Connection, KubeClient
from proxymedic.kube.config import load_connection
from proxymedic.kube.events import EventRecorder
from proxymedic.kube.resources import EVENTS
from proxymedic.operator.controller import Controller
from proxymedic.sim.waiting import until
from tests.agent.test_executor import node
from tests.contract.test_crd_parity import CRDS
from tests.unit.factories import policy, with_change

pytestmark = pytest.mark.emulator

SECRET = "sekrit-7f3a9c1e-do-not-log"
REFUSALS = {
    401: {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    },
    403: {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": 'nodes "node-1" is forbidden: User "system:serviceaccount:proxymedic:pm-proxymedic-agent"'
        ' cannot get resource "nodes"',
        "reason": "Forbidden",
        "code": 403,
    },
}


@pytest.fixture(params=sorted(REFUSALS), ids=lambda code: f"http-{code}")
async def refusing_api(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, list[str]]]:
    """An API server that refuses every request; it records the Authorization headers it saw."""
    code: int = request.param
    seen: list[str] = []

    async def refuse(req: web.Request) -> web.Response:
        seen.append(req.headers.get("Authorization", ""))
        return web.json_response(REFUSALS[code], status=code)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    finally:
        await runner.cleanup()


def kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
                "users": [{"name": "u", "user": {"token": SECRET}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


async def test_refused_requests_never_repeat_the_token(
    refusing_api: tuple[str, list[str]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, seen = refusing_api
    connection = load_connection(str(kubeconfig(tmp_path, server)))
    assert SECRET not in repr(connection)
    assert SECRET not in str(connection)
    caplog.set_level(logging.DEBUG)
    async with KubeClient(connection) as client:
        with pytest.raises(ApiError) as caught:
            await client.get(EVENTS, "x", "default")
        assert SECRET not in str(caught.value)
        assert SECRET not in repr(caught.value)
        assert caught.value.status in REFUSALS
        dp, _ = node()
        runner = AgentRunner(client, NodeAgent(AgentSettings(node_name="node-1"), dp))
        stop = asyncio.Event()
        refused_before = len(seen)
        task = asyncio.create_task(runner.run(stop))
        async with asyncio.timeout(30):  # a few refused attempts, logged with their backoff
            await until(lambda: len(seen) >= refused_before + 2 and "failed" in caplog.text)
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
    assert seen, "the token was in play"
    assert all(header == f"Bearer {SECRET}" for header in seen)
    assert "failed" in caplog.text
    assert str(caught.value.status) in caplog.text
    assert SECRET not in caplog.text


async def test_the_operator_posts_and_logs_no_credential(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with serve() as api:
        for path in sorted(CRDS.glob("*.yaml")):
            api.register_crd(yaml.safe_load(path.read_text()))
        connection = Connection(server=str(api.url).rstrip("/"), token=SECRET)
        async with KubeClient(connection) as client:
            controller = Controller(client, EventRecorder(client, "proxymedic-operator", "test"))
            bad = with_change(policy(), "spec.guardrails.nodeCooldown", "2 minutes")
            await controller.policy_event("ADDED", bad)
            events, _ = await client.list(EVENTS, "default")
    assert [e["reason"] for e in events] == ["PolicyRejected"]
    assert "spec.guardrails.nodeCooldown" in events[0]["message"]
    assert SECRET not in json.dumps(events) + caplog.text + repr(connection)


def test_a_connection_never_shows_its_token() -> None:
    for token in (SECRET, lambda: SECRET):
        connection = Connection(server="https://api.example:6443", token=token)
        assert SECRET not in repr(connection)
        assert "api.example" in repr(connection)
