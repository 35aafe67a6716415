"""iptables mode: the rules are read from the backend that holds kube-proxy's chains.

The node's kube-proxy may use iptables' nft backend or its legacy one, whichever the agent's
image defaults to; as kube-proxy's own image does, the agent reads the one with rules.
"""

from __future__ import annotations

import shutil

import pytest

from proxymedic.dataplane import rules
from proxymedic.dataplane.types import DataplaneError, DataplaneUnavailableError

pytestmark = pytest.mark.unit

KUBE = "*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n"
EMPTY = "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"


def fake(monkeypatch: pytest.MonkeyPatch, outputs: dict[str, str | Exception]) -> list[str]:
    ran: list[str] = []

    def save(command: str) -> str:
        ran.append(command)
        found = outputs.get(command)
        if found is None:
            raise DataplaneUnavailableError(f"{command} is not installed")
        if isinstance(found, Exception):
            raise found
        return found

    monkeypatch.setattr(rules, "_save", save)
    monkeypatch.setattr(shutil, "which", lambda command: command if command in outputs else None)
    return ran


def test_the_default_backend_with_rules_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    ran = fake(monkeypatch, {"iptables-save": KUBE, "ip6tables-save": KUBE, "iptables-legacy-save": EMPTY})
    assert rules.read_iptables() == (KUBE, KUBE)
    assert ran == ["iptables-save", "ip6tables-save"]


def test_the_other_backend_is_read_when_the_default_has_no_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    ran = fake(
        monkeypatch,
        {
            "iptables-save": EMPTY,
            "iptables-nft-save": EMPTY,
            "iptables-legacy-save": KUBE,
            "ip6tables-save": EMPTY,
            "ip6tables-legacy-save": DataplaneError(
                "ip6tables-legacy-save: can't initialize ip6tables table"
            ),
        },
    )
    assert rules.read_iptables() == (KUBE, EMPTY)
    assert ran == [
        "iptables-save",
        "iptables-nft-save",
        "iptables-legacy-save",
        "ip6tables-save",
        "ip6tables-legacy-save",
    ]


def test_the_default_backend_failing_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    fake(monkeypatch, {"iptables-save": DataplaneError("iptables-save: exit code 4")})
    with pytest.raises(DataplaneError, match="exit code 4"):
        rules.read_iptables()
