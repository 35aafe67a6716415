"""Typed adapters over the node's kernel (IPVS, conntrack, sysctls) and kube-proxy, plus a modelled dataplane."""
