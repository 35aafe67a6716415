"""Typed adapters over the kernel (IPVS, conntrack, sysctls) and kube-proxy, plus a modelled dataplane."""
