"""The names of the node sysctls that reports carry and intents may set: vocabulary of the contract.

The operator and the runbook judge by these names and never read a kernel; the dataplane reads
and writes them (``proxymedic.dataplane.sysctl``).
"""

from __future__ import annotations

EXPIRE_NODEST_CONN = "net.ipv4.vs.expire_nodest_conn"
EXPIRE_QUIESCENT_TEMPLATE = "net.ipv4.vs.expire_quiescent_template"
VS_CONNTRACK = "net.ipv4.vs.conntrack"
NF_CONNTRACK_MAX = "net.netfilter.nf_conntrack_max"
NF_CONNTRACK_COUNT = "net.netfilter.nf_conntrack_count"
NF_CONNTRACK_UDP_TIMEOUT = "net.netfilter.nf_conntrack_udp_timeout"
NF_CONNTRACK_UDP_TIMEOUT_STREAM = "net.netfilter.nf_conntrack_udp_timeout_stream"

IPVS_SYSCTLS = (EXPIRE_NODEST_CONN, EXPIRE_QUIESCENT_TEMPLATE, VS_CONNTRACK)
CONNTRACK_SYSCTLS = (
    NF_CONNTRACK_MAX,
    NF_CONNTRACK_COUNT,
    NF_CONNTRACK_UDP_TIMEOUT,
    NF_CONNTRACK_UDP_TIMEOUT_STREAM,
)

ALLOWED_SYSCTLS = (EXPIRE_NODEST_CONN, EXPIRE_QUIESCENT_TEMPLATE, NF_CONNTRACK_MAX)
"""Sysctls an intent may set: the agent refuses any other name."""
