"""``proxymedic programmed``: kube-proxy's rules read back, or one line and exit 3 when they cannot be."""

from __future__ import annotations

import ctypes.util
import json
import os
from pathlib import Path
from typing import Any

import pytest

from proxymedic.agent import rules as programmed
from proxymedic.cli.main import main
from proxymedic.dataplane import rules
from proxymedic.dataplane.types import DataplaneError, DataplaneUnavailableError

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _no_local_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rules are fixtures; this machine's own addresses are no part of them."""
    monkeypatch.setattr(programmed, "local_addresses", lambda: ())


FIXTURES = Path(__file__).parents[1] / "expectation" / "fixtures"


def test_nftables_as_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    document = json.loads((FIXTURES / "kube-proxy-1.36-nftables.json").read_text())
    monkeypatch.setattr(programmed, "read_nftables", lambda: document)
    assert main(["programmed", "node-1", "--mode", "nftables", "-o", "json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["node"] == "node-1"
    assert found["mode"] == "nftables"
    assert {(vs["address"], vs["port"], vs["protocol"]) for vs in found["virtualServers"]} == {
        ("10.96.0.1", 443, "TCP"),
        ("10.96.0.10", 53, "TCP"),
        ("10.96.0.10", 53, "UDP"),
    }


def test_iptables_as_text(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    text = (FIXTURES / "kube-proxy-1.36-iptables-save.txt").read_text()
    monkeypatch.setattr(programmed, "read_iptables", lambda: (text, ""))
    assert main(["programmed", "node-1", "--mode", "iptables"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("node node-1, kube-proxy mode iptables\n")
    assert "UDP  10.96.0.10:53" in out
    assert "  -> 10.244.1.11:53" in out


@pytest.mark.parametrize(
    "failure",
    [
        DataplaneUnavailableError("iptables-save is not installed"),
        DataplaneError("iptables-save: exit code 4"),
    ],
)
def test_unreadable_rules_are_one_line_and_exit_3(
    failure: Exception, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail() -> Any:
        raise failure

    monkeypatch.setattr(programmed, "read_iptables", fail)
    assert main(["programmed", "node-1", "--mode", "iptables"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"cannot read kube-proxy's iptables rules: {failure}" in err[0]


def test_malformed_rules_are_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(programmed, "read_nftables", lambda: {"nftables": "not a list"})
    assert main(["programmed", "node-1", "--mode", "nftables"]) == 3
    assert "not libnftables JSON" in capsys.readouterr().err


def test_a_missing_library_is_unavailable() -> None:
    with pytest.raises(DataplaneUnavailableError, match="libnftables is not installed"):
        rules.Libnftables("libnftables-that-does-not-exist.so.9")


@pytest.mark.skipif(ctypes.util.find_library("nftables") is None, reason="libnftables is not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="listing nftables needs CAP_NET_ADMIN")
def test_the_library_lists_tables_and_leaves_out_absent_ones() -> None:
    with rules.Libnftables() as nft:
        document = nft.list_tables(("ip proxymedic-table-that-does-not-exist",))
        rc, _, error = nft.run("list table ip proxymedic-table-that-does-not-exist")
    assert document == {"nftables": []}
    assert rc != 0
    assert "No such file or directory" in error
