"""The two processes a cluster runs, as real subprocesses against the emulator through a kubeconfig."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from proxymedic.api.crd import KINDS, build_crd
from proxymedic.emulator.connection import write_kubeconfig
from proxymedic.emulator.resources import kopf_peering_crds
from proxymedic.emulator.runner import EmulatorThread

pytestmark = [pytest.mark.emulator, pytest.mark.timeout(60)]


@pytest.fixture
def api() -> Iterator[EmulatorThread]:
    with EmulatorThread() as thread:
        for crd in [*(build_crd(info) for info in KINDS), *kopf_peering_crds()]:
            _post(thread, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        yield thread


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(api: EmulatorThread, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(api.url + path, timeout=5) as response:
        return dict(json.loads(response.read()))


def _post(api: EmulatorThread, path: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        api.url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=5).close()


def _wait(condition: Callable[[], Any], within: float = 45.0) -> Any:
    """Poll ``condition`` until it returns something true. ``within`` only bounds a hang: a process
    starting on a busy machine may take many times as long as on an idle one."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if result := condition():
                return result
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("the condition was not met in time")


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "proxymedic.cli.main", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _stop(process: subprocess.Popen[bytes]) -> str:
    process.terminate()
    try:
        output, _ = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output.decode(errors="replace")


def test_operator_process_serves_liveness_and_metrics_and_accepts_a_policy(
    api: EmulatorThread, tmp_path: Path
) -> None:
    kubeconfig = write_kubeconfig(api.url, tmp_path / "kubeconfig")
    liveness, metrics = _free_port(), _free_port()
    process = _run(
        [
            "operator",
            "--kubeconfig",
            str(kubeconfig),
            "--standalone",
            "--metrics-port",
            str(metrics),
            "--liveness-endpoint",
            f"http://127.0.0.1:{liveness}/healthz",
            "--housekeeping-interval",
            "1s",
        ]
    )
    try:
        _post(
            api,
            "/apis/proxymedic.io/v1alpha1/proxyhealthpolicies",
            {"apiVersion": "proxymedic.io/v1alpha1", "kind": "ProxyHealthPolicy", "metadata": {"name": "p"}},
        )
        status = _wait(lambda: _get(api, "/apis/proxymedic.io/v1alpha1/proxyhealthpolicies/p").get("status"))
        assert {c["type"]: c["status"] for c in status["conditions"]}["Accepted"] == "True"
        assert _wait(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{liveness}/healthz", timeout=2).status == 200
        )
        page = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=2).read().decode()
        assert "proxymedic_open_intents" in page
    finally:
        output = _stop(process)
    assert "Traceback" not in output, output


def test_agent_process_reports_what_it_cannot_sense_and_keeps_running(
    api: EmulatorThread, tmp_path: Path
) -> None:
    # This kernel has no IPVS and no kube-proxy listens: the agent must say so, not crash.
    kubeconfig = write_kubeconfig(api.url, tmp_path / "kubeconfig")
    _post(api, "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}})
    process = _run(
        [
            "agent",
            "--kubeconfig",
            str(kubeconfig),
            "--metrics-port",
            "0",
            "--sense-interval",
            "1s",
            "--heartbeat",
            "1s",
        ],
        env={"NODE_NAME": "node-1", "PATH": "/usr/bin:/bin"},
    )
    try:
        report = _wait(
            lambda: _get(api, "/apis/proxymedic.io/v1alpha1/nodeproxyhealths/node-1").get("status")
        )
        assert report["kubeProxy"]["freshness"] == "Unknown"
        assert report["proxyMode"] == "unknown"
        obj = _get(api, "/apis/proxymedic.io/v1alpha1/nodeproxyhealths/node-1")
        assert obj["metadata"]["ownerReferences"][0]["kind"] == "Node"
        # Still running after more sensing rounds: a later heartbeat report replaces the first one.
        path = "/apis/proxymedic.io/v1alpha1/nodeproxyhealths/node-1"
        _wait(lambda: _get(api, path)["status"]["observedAt"] != report["observedAt"])
        assert process.poll() is None, "still running"
    finally:
        output = _stop(process)
    assert "Traceback" not in output, output
