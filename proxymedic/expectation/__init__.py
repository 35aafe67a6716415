"""What kube-proxy should have programmed on a node right now, from the API objects alone.

A pure function of Services, EndpointSlices and Nodes (no I/O, no framework): the operator
judges a node's reported dataplane against it, and ``proxymedic expect`` prints it.
"""

from proxymedic.expectation.ipvs import (
    MODE,
    RULE_MODES,
    NodeExpectation,
    Objects,
    ProxyOptions,
    RealServer,
    VirtualServer,
    expect_from_objects,
    expect_node,
)
from proxymedic.expectation.ipvsadm import IpvsadmParseError, parse_ipvsadm
from proxymedic.expectation.model import (
    Family,
    NodeSpec,
    ServiceSpec,
    SliceSpec,
    parse_node,
    parse_service,
    parse_slice,
)
from proxymedic.expectation.rules import RulesParseError, parse_iptables_save, parse_nftables_json

__all__ = [
    "MODE",
    "RULE_MODES",
    "Family",
    "IpvsadmParseError",
    "NodeExpectation",
    "NodeSpec",
    "Objects",
    "ProxyOptions",
    "RealServer",
    "RulesParseError",
    "ServiceSpec",
    "SliceSpec",
    "VirtualServer",
    "expect_from_objects",
    "expect_node",
    "parse_iptables_save",
    "parse_ipvsadm",
    "parse_nftables_json",
    "parse_node",
    "parse_service",
    "parse_slice",
]
