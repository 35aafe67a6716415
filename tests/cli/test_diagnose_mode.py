"""``proxymedic diagnose``'s first step on nodes without IPVS: what applies, and how to compare the rules."""

from __future__ import annotations

import pytest

from proxymedic.api.health import NodeProxyHealthStatus
from proxymedic.runbook.diagnose import step_mode
from tests.unit.factories import node_health

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("mode", ["nftables", "iptables"])
def test_a_rule_mode_node_is_told_how_to_compare_its_rules(mode: str) -> None:
    status = NodeProxyHealthStatus.model_validate(
        node_health(proxyMode=mode, kernelVersion="6.1.0")["status"]
    )
    step = step_mode(status, "node-7")
    assert step.summary.startswith(
        f"{mode}, kernel 6.1.0: no IPVS; the agent reads kube-proxy's {mode} rules"
    )
    assert step.details == [
        f"to compare by hand, on the node: `proxymedic programmed node-7 --mode {mode}` with "
        f"`proxymedic expect node-7 --mode {mode}`"
    ]


def test_an_ipvs_node_has_no_such_hint() -> None:
    status = NodeProxyHealthStatus.model_validate(node_health(kernelVersion="6.1.0")["status"])
    assert step_mode(status, "node-7").details == []
