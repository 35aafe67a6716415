"""What kube-proxy should have programmed on a node right now, from the API objects alone.

A pure function of Services, EndpointSlices and Nodes (no I/O, no framework): the operator
judges a node's reported dataplane against it, and ``proxymedic expect`` prints it.
"""

from proxymedic.expectation.ipvs import (
    MODE,
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

__all__ = [
    "MODE",
    "Family",
    "IpvsadmParseError",
    "NodeExpectation",
    "NodeSpec",
    "Objects",
    "ProxyOptions",
    "RealServer",
    "ServiceSpec",
    "SliceSpec",
    "VirtualServer",
    "expect_from_objects",
    "expect_node",
    "parse_ipvsadm",
    "parse_node",
    "parse_service",
    "parse_slice",
]
