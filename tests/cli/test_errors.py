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


def test_a_missing_kubeconfig_is_named(run: Run, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    result = run("status", "--kubeconfig", str(missing))
    assert (result.code, result.out) == (4, "")
    assert result.err == f"proxymedic: error: kubeconfig {missing} is missing: no such file (--kubeconfig)\n"


def test_no_kubeconfig_anywhere_says_where_it_looked(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    result = run("diagnose", "node-1")
    assert (result.code, result.out) == (4, "")
    assert result.err.startswith(
        f"proxymedic: error: kubeconfig {tmp_path}/.kube/config is missing and KUBECONFIG is not set: "
    )
    assert result.err.count("\n") == 1


def test_an_unreadable_kubeconfig_is_named(run: Run, tmp_path: Path) -> None:
    result = run("status", "--kubeconfig", str(tmp_path))  # a directory: unreadable even for root
    assert (result.code, result.out) == (4, "")
    assert (
        result.err
        == f"proxymedic: error: kubeconfig {tmp_path} is unreadable: it is a directory (--kubeconfig)\n"
    )


def test_an_invalid_kubeconfig_is_named(run: Run, tmp_path: Path) -> None:
    broken = tmp_path / "config"
    broken.write_text("apiVersion: v1\nkind: Config\n")
    result = run("status", "--kubeconfig", str(broken))
    assert (result.code, result.out) == (4, "")
    assert result.err.startswith(f"proxymedic: error: kubeconfig {broken} is invalid: ")
    assert result.err.count("\n") == 1


@pytest.mark.parametrize("command", [["operator"], ["agent", "--node-name", "node-1"]])
def test_the_processes_name_a_missing_kubeconfig_too(run: Run, tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "missing"
    result = run(*command, "--kubeconfig", str(missing), "--metrics-port", "0")
    assert result.code == 4
    assert result.err == f"proxymedic: error: kubeconfig {missing} is missing: no such file (--kubeconfig)\n"


def test_unknown_context(run: Run, populated: Path) -> None:
    result = run("status", "--context", "production", kubeconfig=populated)
    assert result.code == 4
    assert result.err.startswith(f"proxymedic: error: kubeconfig {populated} is invalid: ")
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
