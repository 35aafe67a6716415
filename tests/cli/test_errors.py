"""Every error of the runbook commands: one clear line on stderr, nothing on stdout, a non-zero code."""

from __future__ import annotations

import socket
from pathlib import Path

import kmock
import pytest

from proxymedic.emulator.connection import write_kubeconfig
from proxymedic.emulator.runner import EmulatorThread
from tests.cli import cluster
from tests.cli.conftest import Run
from tests.cli.snapshots import check

pytestmark = pytest.mark.emulator


def test_unknown_node(run: Run, populated: Path) -> None:
    result = run("diagnose", "node3", kubeconfig=populated)
    assert (result.code, result.out) == (1, "")
    check("error-unknown-node.txt", result.err)
    assert result.err == 'proxymedic: error: node "node3" not found; did you mean node-3?\n'


def test_node_without_an_agent(run: Run, populated: Path) -> None:
    result = run("diagnose", "node-5", kubeconfig=populated)
    assert (result.code, result.out) == (1, "")
    check("error-no-agent.txt", result.err)
    assert result.err.startswith(
        'proxymedic: error: node "node-5" has no ProxyMedic agent report (no NodeProxyHealth)'
    )
    assert result.err.count("\n") == 1


@pytest.mark.parametrize("command", [["status"], ["diagnose", "node-1"]])
def test_crds_not_installed(run: Run, empty_api: tuple[EmulatorThread, Path], command: list[str]) -> None:
    _, kubeconfig = empty_api
    result = run(*command, kubeconfig=kubeconfig)
    assert (result.code, result.out) == (3, "")
    check("error-no-crds.txt", result.err)
    assert "CRDs are not installed" in result.err


FORBIDDEN = {
    "kind": "Status",
    "apiVersion": "v1",
    "status": "Failure",
    "reason": "Forbidden",
    "code": 403,
    "message": 'nodeproxyhealths.proxymedic.io is forbidden: User "jane" cannot list resource '
    '"nodeproxyhealths" in API group "proxymedic.io" at the cluster scope',
}


@pytest.mark.parametrize("command", [["status"], ["diagnose", "node-1"]])
def test_no_permission(run: Run, empty_api: tuple[EmulatorThread, Path], command: list[str]) -> None:
    api, kubeconfig = empty_api
    cluster.register_crds(api)
    api.emulator["list", kmock.resource("proxymedic.io", "v1alpha1", "nodeproxyhealths")] << 403 << FORBIDDEN
    result = run(*command, kubeconfig=kubeconfig)
    assert (result.code, result.out) == (3, "")
    check("error-forbidden.txt", result.err)
    assert result.err.startswith("proxymedic: error: not allowed to list nodeproxyhealths.proxymedic.io: ")


def test_bare_403_still_says_what_was_refused(run: Run, empty_api: tuple[EmulatorThread, Path]) -> None:
    api, kubeconfig = empty_api
    cluster.register_crds(api)
    api.emulator["list", kmock.resource("", "v1", "events")] << 403
    result = run("status", kubeconfig=kubeconfig)
    assert result.code == 3
    assert result.err.startswith("proxymedic: error: not allowed to list events: 403 Error ")


def test_api_server_unreachable(run: Run, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on once the socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    result = run("status", kubeconfig=write_kubeconfig(url, tmp_path / "config"))
    assert (result.code, result.out) == (3, "")
    assert result.err.startswith(f"proxymedic: error: cannot reach the API server at {url}: ")
    assert result.err.count("\n") == 1


def test_no_kubeconfig(run: Run, tmp_path: Path) -> None:
    result = run("status", "--kubeconfig", str(tmp_path / "missing"))
    assert result.code == 3
    assert result.err.startswith("proxymedic: error: cannot load the kubeconfig: ")
    assert result.err.count("\n") == 1


def test_unknown_context(run: Run, populated: Path) -> None:
    result = run("status", "--context", "production", kubeconfig=populated)
    assert result.code == 3
    assert "production" in result.err
    assert result.err.count("\n") == 1


def test_unknown_reason(run: Run) -> None:
    result = run("explain", "StaleConectionsFlushed")
    assert (result.code, result.out) == (1, "")
    check("error-unknown-reason.txt", result.err)
    assert "did you mean StaleConnectionsFlushed?" in result.err


def test_usage_errors_are_argparse_errors(run: Run) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run("diagnose")
    assert exit_info.value.code == 2
